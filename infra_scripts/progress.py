"""Follow a Step Functions execution through its history: which states ran, their status and
time, with a live table while it runs. Reads only the public API, so it works on AWS too."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
STATUS_STYLE = {"running": "yellow", "succeeded": "green", "failed": "red", "caught": "red"}


@dataclass
class StateRun:
    name: str
    entered: datetime
    exited: datetime | None = None
    status: str = "running"
    visits: int = 1
    error: str = ""

    def elapsed(self, now: datetime) -> float:
        return ((self.exited or now) - self.entered).total_seconds()


@dataclass
class ExecutionView:
    """States in the order first entered; loops count visits instead of adding rows."""

    states: dict[str, StateRun] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    seen_event_ids: set[int] = field(default_factory=set)

    def apply(self, event: dict) -> None:
        if event["id"] in self.seen_event_ids:
            return
        self.seen_event_ids.add(event["id"])
        kind, when = event["type"], event["timestamp"]
        if kind.endswith("StateEntered"):
            self._entered(event["stateEnteredEventDetails"]["name"], when)
        elif kind.endswith("StateExited"):
            run = self.states.get(event["stateExitedEventDetails"]["name"])
            if run and run.status == "running":
                run.exited, run.status = when, "succeeded"
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"):
            self._failed(event, when)

    def _entered(self, name: str, when: datetime) -> None:
        if name in self.states:
            run = self.states[name]
            run.visits += 1
            run.status, run.exited = "running", None
        else:
            self.states[name] = StateRun(name, when)
            self.order.append(name)

    def _failed(self, event: dict, when: datetime) -> None:
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        running = [self.states[n] for n in reversed(self.order) if self.states[n].status == "running"]
        if running:
            running[0].status, running[0].exited = "failed", when
            running[0].error = f"{details.get('error', '')}: {details.get('cause', '')}"[:300]

    def table(self, title: str) -> Table:
        now = datetime.now(tz=next(iter(self.states.values())).entered.tzinfo) if self.states else None
        table = Table(title=title, expand=False)
        for column in ("state", "status", "visits", "elapsed"):
            table.add_column(column)
        for name in self.order:
            run = self.states[name]
            style = STATUS_STYLE.get(run.status, "")
            table.add_row(name, f"[{style}]{run.status}[/]", str(run.visits),
                          f"{run.elapsed(now):.1f}s" if now else "")
        return table


def history(sfn: Any, execution_arn: str) -> list[dict]:
    events, token = [], None
    while True:
        kwargs = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


def follow_execution(sfn: Any, execution_arn: str, console: Console | None = None,
                     extra_status: Callable[[], str] | None = None, poll_seconds: float = 0.5,
                     timeout_seconds: float = 3600) -> tuple[dict, ExecutionView]:
    """Block until the execution ends; returns its description and the view of its states."""
    console = console or Console()
    view, deadline = ExecutionView(), time.monotonic() + timeout_seconds
    started = time.monotonic()
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            for event in history(sfn, execution_arn):
                view.apply(event)
            note = extra_status() if extra_status else ""
            title = f"{description['status']} · {time.monotonic() - started:.0f}s {note}"
            live.update(view.table(title))
            if description["status"] in TERMINAL or time.monotonic() > deadline:
                return description, view
            time.sleep(poll_seconds)
