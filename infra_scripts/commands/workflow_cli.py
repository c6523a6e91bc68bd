"""Workflow commands: list, status, history, logs, upload, redrive, rerun, graph, console.

Every command talks to Step Functions through the public API: on AWS by default (standard
profile/region resolution), or to a local cloud with ``--endpoint-url`` / ``AWS_ENDPOINT_URL``
(e.g. ``stepml local-cloud`` running in another terminal).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

console = Console()
STATUS_STYLE = {"SUCCEEDED": "green", "RUNNING": "yellow", "FAILED": "red", "TIMED_OUT": "red",
                "ABORTED": "dim", "succeeded": "green", "running": "yellow", "failed": "red",
                "caught": "dark_orange", "aborted": "dim", "timed_out": "red"}


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def aws_options(command: Callable) -> Callable:
    """--endpoint-url/--region on a command, turned into an ``executions.Clients``; AWS and
    input errors become one-line messages instead of tracebacks."""

    @click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                  help="Service endpoint, e.g. http://127.0.0.1:4566 for `stepml local-cloud` "
                       "(default: $AWS_ENDPOINT_URL, else AWS).")
    @click.option("--region", default=None, help="AWS region (default: standard resolution).")
    @functools.wraps(command)
    def wrapper(*args: Any, endpoint_url: str | None, region: str | None, **kwargs: Any) -> Any:
        from infra_scripts import executions as ex

        try:
            return command(*args, clients=ex.Clients(region, endpoint_url), **kwargs)
        except ex.WorkflowError as error:
            raise click.ClickException(f"{error.code}: {error.message}") from None
        except ClientError as error:
            info = error.response.get("Error", {})
            raise click.ClickException(f"{info.get('Code')}: {info.get('Message')}") from None
        except BotoCoreError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _execution_arn(clients: Any, reference: str) -> str:
    from infra_scripts import executions as ex

    return ex.resolve_execution(clients.client("stepfunctions"), reference)


def _follow(clients: Any, arn: str) -> None:
    from infra_scripts.progress import follow_execution

    described, _ = follow_execution(clients.client("stepfunctions"), arn, console)
    console.print(f"{_styled(described['status'])} {arn}")
    if described["status"] != "SUCCEEDED":
        raise SystemExit(1)


# -- list / status / history / logs --------------------------------------------------------
@click.command("list")
@click.option("--state-machine", "machine_filter", default=None,
              help="Only this state machine (name or ARN).")
@click.option("--limit", default=20, show_default=True, help="Executions shown per state machine.")
@aws_options
def list_command(clients: Any, machine_filter: str | None, limit: int) -> None:
    """State machines and their recent executions (status, duration, redrives)."""
    from infra_scripts import executions as ex

    sfn = clients.client("stepfunctions")
    machines = [m for m in ex.list_state_machines(sfn)
                if machine_filter in (None, m["name"], m["stateMachineArn"])]
    if machine_filter and not machines:
        raise click.ClickException(f"no state machine {machine_filter}")
    table = Table(title="executions")
    for column in ("state machine", "execution", "status", "started", "duration", "redrives"):
        table.add_column(column)
    for machine in machines:
        for execution in ex.list_executions(sfn, machine["stateMachineArn"], limit):
            table.add_row(machine["name"], execution["name"], _styled(execution["status"]),
                          _when(execution["startDate"]), f"{ex.duration_seconds(execution):.1f}s",
                          str(execution.get("redriveCount", 0) or ""))
    console.print(f"{len(machines)} state machine(s): " + ", ".join(m["name"] for m in machines))
    console.print(table)
    if clients.on_aws:
        for machine in machines:
            console.print(f"{machine['name']}: {ex.console_url(clients.region, machine['stateMachineArn'])}")


@click.command()
@click.argument("execution")
@aws_options
def status(clients: Any, execution: str) -> None:
    """An execution's status and every state it went through."""
    from infra_scripts import executions as ex
    from infra_scripts.progress import history

    sfn = clients.client("stepfunctions")
    arn = _execution_arn(clients, execution)
    described = sfn.describe_execution(executionArn=arn)
    runs = ex.state_runs(history(sfn, arn))
    summary = Table(show_header=False, title=described["name"])
    rows = [("status", _styled(described["status"])), ("execution", arn),
            ("started", _when(described["startDate"])),
            ("duration", f"{ex.duration_seconds(described):.1f}s"),
            ("redrives", str(described.get("redriveCount", 0)))]
    if described.get("error"):
        rows.append(("error", f"{described['error']}: {str(described.get('cause', ''))[:300]}"))
    if clients.on_aws:
        rows.append(("console", ex.console_url(clients.region, arn)))
    for key, value in rows:
        summary.add_row(key, value)
    console.print(summary)
    console.print(_states_table(runs))


def _states_table(runs: dict) -> Table:
    table = Table(title="states")
    for column in ("state", "type", "status", "visits", "attempts", "error"):
        table.add_column(column)
    for run in runs.values():
        error = f"{run.error}: {(run.cause or '')[:120]}" if run.error else ""
        table.add_row(run.name, run.type, _styled(run.status), str(run.visits), str(run.attempts or ""),
                      error)
    return table


@click.command()
@click.argument("execution")
@click.option("--limit", default=0, help="Show only the last N events.")
@aws_options
def history(clients: Any, execution: str, limit: int) -> None:
    """The execution's event history."""
    from infra_scripts.progress import history as fetch_history

    events = fetch_history(clients.client("stepfunctions"), _execution_arn(clients, execution))
    table = Table(title=f"{len(events)} events")
    for column in ("id", "time", "type", "state", "detail"):
        table.add_column(column)
    for event in events[-limit:] if limit else events:
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        detail = details.get("error") or details.get("output") or details.get("input") or ""
        table.add_row(str(event["id"]), event["timestamp"].astimezone().strftime("%H:%M:%S.%f")[:-3],
                      event["type"], details.get("name", ""), str(detail)[:100])
    console.print(table)


@click.command()
@click.argument("execution")
@click.option("--state", "state", default=None, help="Only this state's handler logs.")
@click.option("--training/--no-training", default=True, show_default=True,
              help="Include the training job's logs (/aws/sagemaker/TrainingJobs).")
@aws_options
def logs(clients: Any, execution: str, state: str | None, training: bool) -> None:
    """Handler logs (CloudWatch /aws/lambda/<function>, each state's time window) and training
    job logs of an execution."""
    from infra_scripts import executions as ex
    from infra_scripts.progress import history as fetch_history

    runs = ex.state_runs(fetch_history(clients.client("stepfunctions"), _execution_arn(clients, execution)))
    if state and state not in runs:
        raise click.ClickException(f"state {state} did not run in this execution; ran: {', '.join(runs)}")
    lines = ex.handler_logs(clients.client("logs"), runs, state)
    if training and not state:
        lines += ex.training_logs(clients.client("logs"), runs)
    if not lines:
        console.print("[dim]no log lines found in CloudWatch for this execution[/]")
    for line in sorted(lines, key=lambda item: item.timestamp):
        stamp = datetime.fromtimestamp(line.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
        console.print(f"{stamp} {line.state:>24} | {line.message.rstrip()}", highlight=False, markup=False)


# -- upload / redrive / rerun ----------------------------------------------------------------
@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--dataset", "name", required=True, help="Dataset name: uploaded to datasets/NAME/.")
@click.option("--bucket", default=None, help="Bucket (default: the config's).")
@click.option("--follow/--no-follow", default=False,
              help="Wait for the execution the upload trigger starts and follow it.")
@click.pass_context
@aws_options
def upload(ctx: click.Context, clients: Any, directory: Path, name: str, bucket: str | None,
           follow: bool) -> None:
    """Upload a dataset (train/ valid/ test/) and write its completion marker last; the S3
    trigger then starts one pipeline execution."""
    from handlers.on_upload import dataset_of, execution_name
    from infra_scripts.cli import load_config
    from infra_scripts.trigger import upload_dataset

    config = load_config(ctx)
    bucket = bucket or config.bucket
    if not all((directory / split).is_dir() for split in ("train", "valid", "test")):
        raise click.ClickException(f"{directory} must hold train/, valid/ and test/ folders")
    if dataset_of(f"{config.dataset_prefix}{name}/_READY", config.dataset_prefix) is None:
        raise click.ClickException(f"invalid dataset name {name!r}")
    s3 = clients.client("s3")
    with console.status("uploading") as spinner:
        uri = upload_dataset(s3, bucket, directory, name, config.dataset_prefix,
                             progress=lambda done, total: spinner.update(f"uploading {done}/{total}"))
    console.print(f"uploaded {uri} (marker written last)")
    marker = _marker_key(s3, bucket, f"{config.dataset_prefix}{name}/")
    head = s3.head_object(Bucket=bucket, Key=marker)
    expected = execution_name({"bucket": bucket, "key": marker, "etag": head["ETag"],
                               "version": head.get("VersionId") or ""}, name)
    arn = config.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{expected}"
    console.print(f"the trigger starts execution [bold]{expected}[/]")
    if follow:
        _wait_for(clients, arn)
        _follow(clients, arn)


def _marker_key(s3: Any, bucket: str, prefix: str) -> str:
    for candidate in ("manifest.json", "_READY"):
        try:
            s3.head_object(Bucket=bucket, Key=prefix + candidate)
            return prefix + candidate
        except ClientError:
            continue
    raise click.ClickException(f"no marker under s3://{bucket}/{prefix}")


def _wait_for(clients: Any, arn: str, timeout_s: float = 60) -> None:
    sfn, deadline = clients.client("stepfunctions"), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            sfn.describe_execution(executionArn=arn)
            return
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.5)
    raise click.ClickException(f"no execution started within {timeout_s:.0f}s; is the trigger "
                               "deployed? (stepml logs / the on-upload function's logs)")


@click.command()
@click.argument("execution")
@click.option("--follow/--no-follow", default=False, help="Follow the redriven execution to its end.")
@aws_options
def redrive(clients: Any, execution: str, follow: bool) -> None:
    """RedriveExecution: resume a FAILED/ABORTED/TIMED_OUT execution at the state that did not
    succeed (same ARN), reusing the results of the states that did."""
    from infra_scripts import executions as ex

    arn = _execution_arn(clients, execution)
    when = ex.redrive(clients.client("stepfunctions"), arn)
    console.print(f"redriven at {_when(when)}: {arn}")
    if follow:
        _follow(clients, arn)


@click.command()
@click.argument("execution")
@click.option("--from", "state", required=True,
              help="State to start from, with the input it was entered with in EXECUTION.")
@click.option("--follow/--no-follow", default=False, help="Follow the new execution to its end.")
@aws_options
def rerun(clients: Any, execution: str, state: str, follow: bool) -> None:
    """Start a NEW execution at STATE with that state's recorded input from EXECUTION.

    It runs on a temporary state machine `<name>-from-<STATE>`: the same ASL and role with
    StartAt set to STATE (states unreachable from it dropped). Use `redrive` to continue the same
    execution instead.
    """
    from infra_scripts import executions as ex

    started = ex.rerun_from(clients.client("stepfunctions"), _execution_arn(clients, execution), state)
    console.print(f"started {started['executionArn']}\n  on {started['stateMachineArn']}")
    if follow:
        _follow(clients, started["executionArn"])


# -- graph / console ---------------------------------------------------------------------------
@click.command()
@click.option("--execution", default=None, help="Colour the states by this execution's status.")
@click.option("--state-machine", "machine", default=None,
              help="Draw this deployed state machine (ARN or name) instead of the local definition.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .svg, .png or .html.")
@click.pass_context
@aws_options
def graph(ctx: click.Context, clients: Any, execution: str | None, machine: str | None, out: Path) -> None:
    """Draw the workflow graph from its ASL (Choice branches, poll loops, Catch edges).

    Without --execution/--state-machine it draws the pipeline definition from the local config,
    offline."""
    from statemachine import graph as drawing

    if out.suffix.lower() not in (".svg", ".png", ".html"):
        raise click.UsageError("--out must end in .svg, .png or .html")
    definition, statuses, title, rows = _graph_source(ctx, clients, execution, machine)
    if out.suffix.lower() == ".svg":
        out.write_text(drawing.to_svg(definition, statuses, title))
    elif out.suffix.lower() == ".png":
        out.write_bytes(drawing.to_png(definition, statuses))
    else:
        out.write_text(drawing.to_html(definition, statuses, title, rows))
    console.print(f"wrote {out}")


def _graph_source(ctx: click.Context, clients: Any, execution: str | None,
                  machine: str | None) -> tuple[dict, dict | None, str, list | None]:
    from infra_scripts import executions as ex
    from infra_scripts.cli import load_config
    from infra_scripts.progress import history as fetch_history
    from statemachine.workflow import definition_dict

    sfn = clients.client("stepfunctions")
    if execution:
        arn = _execution_arn(clients, execution)
        described = sfn.describe_state_machine_for_execution(executionArn=arn)
        runs = ex.state_runs(fetch_history(sfn, arn))
        rows = [{"state": r.name, "status": r.status, "visits": str(r.visits), "error": r.error or ""}
                for r in runs.values()]
        return json.loads(described["definition"]), ex.statuses(runs), arn.rsplit(":", 1)[-1], rows
    if machine:
        arns = {m["name"]: m["stateMachineArn"] for m in ex.list_state_machines(sfn)}
        described = sfn.describe_state_machine(stateMachineArn=arns.get(machine, machine))
        return json.loads(described["definition"]), None, described["name"], None
    config = load_config(ctx)
    return definition_dict(config), None, config.state_machine_name, None


@click.command("console")
@click.option("--port", default=8765, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open/--no-open", "open_browser", default=False, help="Open it in a browser.")
@click.pass_context
@aws_options
def console_command(ctx: click.Context, clients: Any, port: int, open_browser: bool) -> None:
    """A local web console: state machines, executions, live graph, state input/output, redrive;
    the stack's model registry, training curves, live endpoint and a predict form."""
    from infra_scripts.cli import load_config
    from infra_scripts.console.server import ConsoleServer

    server = ConsoleServer(clients, port=port, config=load_config(ctx))
    where = clients.endpoint_url or f"AWS ({clients.region})"
    console.print(f"stepml console reading {where}; Ctrl-C to stop. Open (this start's token):")
    click.echo(f"    {server.url_with_token}")  # unwrapped, so it can be copied whole
    if open_browser:
        import webbrowser

        webbrowser.open(server.url_with_token)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


COMMANDS = (list_command, status, history, logs, upload, redrive, rerun, graph, console_command)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
