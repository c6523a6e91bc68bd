"""Reading and acting on Step Functions executions through the public API only, so the CLI and
the console work the same against AWS and the local cloud: per-state runs from the history,
redrive, rerun from a state, handler/training logs and console deep links."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from infra_scripts.aws_clients import AwsClients
from infra_scripts.progress import history

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
REDRIVABLE = ("FAILED", "ABORTED", "TIMED_OUT")
EXECUTION_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[^:\s]+:[^:\s]+$")
STATE_MACHINE_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:\s]+$")
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_FAILURE_EVENTS = ("Failed", "TimedOut", "Aborted")


class WorkflowError(Exception):
    """A user-facing problem (unknown execution, unknown state, nothing recorded...)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# -- clients -------------------------------------------------------------------------------
Clients = AwsClients  # the operator side's one factory (infra_scripts/aws_clients.py)


# -- deep links ----------------------------------------------------------------------------
def console_url(region: str, arn: str) -> str:
    base = f"https://{region}.console.aws.amazon.com/states/home?region={region}"
    if ":execution:" in arn:
        return f"{base}#/v2/executions/details/{arn}"
    return f"{base}#/statemachines/view/{arn}"


# -- finding things ------------------------------------------------------------------------
def resolve_execution(sfn: Any, reference: str) -> str:
    """An execution ARN from an ARN or a bare execution name (searched in every state machine)."""
    if reference.startswith("arn:"):
        if not EXECUTION_ARN.match(reference):
            raise WorkflowError("InvalidArn", f"not an execution ARN: {reference}")
        return reference
    for machine in list_state_machines(sfn):
        for page in sfn.get_paginator("list_executions").paginate(
                stateMachineArn=machine["stateMachineArn"]):
            for execution in page["executions"]:
                if execution["name"] == reference:
                    return execution["executionArn"]
    raise WorkflowError("ExecutionDoesNotExist", f"no execution named {reference}", 404)


def list_state_machines(sfn: Any) -> list[dict]:
    machines: list[dict] = []
    for page in sfn.get_paginator("list_state_machines").paginate():
        machines.extend(page["stateMachines"])
    return machines


def list_executions(sfn: Any, state_machine_arn: str, limit: int = 50) -> list[dict]:
    return sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=limit)["executions"]


def duration_seconds(execution: dict, now: datetime | None = None) -> float:
    start = execution["startDate"]
    stop = execution.get("stopDate") or now or datetime.now(tz=start.tzinfo)
    return max(0.0, (stop - start).total_seconds())


# -- the history, digested -----------------------------------------------------------------
@dataclass
class StateRun:
    """One state's latest visit: status is succeeded, running, failed, caught (failed into a
    Catch), aborted or timed_out."""

    name: str
    type: str
    status: str = "running"
    visits: int = 0
    attempts: int = 0
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    entered: str | None = None
    exited: str | None = None
    resource: str | None = None  # e.g. the Lambda function a Task invoked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_runs(events: list[dict]) -> dict[str, StateRun]:
    """Fold the history into one record per state (latest visit wins), in first-entered order."""
    runs: dict[str, StateRun] = {}
    current: StateRun | None = None
    for event in events:
        kind, when = event["type"], str(event["timestamp"])
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            current = runs.setdefault(details["name"], StateRun(details["name"],
                                                                kind.removesuffix("StateEntered")))
            current.visits += 1
            current.status, current.input, current.entered = "running", details.get("input"), when
            current.output = current.error = current.cause = current.exited = None
            current.attempts = 0
        elif kind.endswith("StateExited") and current is not None:
            current.status = "caught" if current.status == "failed" else "succeeded"
            current.output, current.exited = event["stateExitedEventDetails"].get("output"), when
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled") and current is not None:
            current.attempts += 1
            current.status = "running"  # a Retry after a failure
            current.resource = _resource(event)
        elif kind.startswith("Execution") and kind != "ExecutionStarted":
            _execution_ended(runs, kind, event, when)
        elif kind.endswith(_FAILURE_EVENTS) and current is not None:
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            current.status = "failed"
            current.error, current.cause = details.get("error"), details.get("cause")
    return runs


def _resource(event: dict) -> str | None:
    details = event.get("taskScheduledEventDetails") or event.get("lambdaFunctionScheduledEventDetails", {})
    try:
        parameters = json.loads(details.get("parameters") or "{}")
    except ValueError:
        parameters = {}
    return parameters.get("FunctionName") or details.get("resource")


def _execution_ended(runs: dict[str, StateRun], kind: str, event: dict, when: str) -> None:
    """Close what was still open when the execution stopped (a Fail state, a failed Task...)."""
    ending = {"ExecutionSucceeded": "succeeded", "ExecutionFailed": "failed",
              "ExecutionAborted": "aborted", "ExecutionTimedOut": "timed_out"}.get(kind)
    if ending is None:
        return
    details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
    for run in runs.values():
        if run.status == "running":
            run.status, run.exited = ending, when
            if ending == "failed" and run.error is None:
                run.error, run.cause = details.get("error"), details.get("cause")


def statuses(runs: dict[str, StateRun]) -> dict[str, str]:
    return {name: run.status for name, run in runs.items()}


def recorded_input(events: list[dict], state: str) -> Any:
    """The input ``state`` was last entered with, or None if it never ran."""
    found = None
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] == state:
            found = details.get("input")
    return None if found is None else json.loads(found)


# -- redrive and rerun ---------------------------------------------------------------------
def redrive(sfn: Any, execution_arn: str) -> datetime:
    described = sfn.describe_execution(executionArn=execution_arn)
    if described["status"] not in REDRIVABLE:
        raise WorkflowError("ExecutionNotRedrivable", f"execution is {described['status']}; only "
                            f"{', '.join(REDRIVABLE)} executions can be redriven", 409)
    return sfn.redrive_execution(executionArn=execution_arn)["redriveDate"]


def reachable(definition: dict, start: str) -> list[str]:
    """States reachable from ``start`` (Next, Choices, Default, Catch), in definition order."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = definition["States"][name]
        todo += [state[k] for k in ("Next", "Default") if k in state]
        todo += [rule["Next"] for rule in state.get("Choices", []) + state.get("Catch", [])]
    return [name for name in definition["States"] if name in seen]


def definition_from(definition: dict, state: str) -> dict:
    """The same ASL starting at ``state``; unreachable states dropped (AWS rejects them)."""
    if state not in definition["States"]:
        known = ", ".join(definition["States"])
        raise WorkflowError("UnknownState", f"no state {state!r} in the definition; states: {known}")
    kept = reachable(definition, state)
    return {**definition, "StartAt": state,
            "States": {name: definition["States"][name] for name in kept}}


def _safe_name(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit]


def rerun_from(sfn: Any, execution_arn: str, state: str) -> dict[str, str]:
    """A new execution that starts at ``state`` with the input it was entered with in
    ``execution_arn``, on a temporary state machine ``<machine>-from-<state>`` (same ASL and
    role, StartAt changed); the original state machine is left untouched."""
    machine = sfn.describe_state_machine_for_execution(executionArn=execution_arn)
    definition = definition_from(json.loads(machine["definition"]), state)
    state_input = recorded_input(history(sfn, execution_arn), state)
    if state_input is None:
        raise WorkflowError("StateNeverRan", f"{state} never ran in this execution, so it has no "
                            "recorded input to start from")
    name = f"{_safe_name(machine['name'], 50)}-from-{_safe_name(state, 24)}"[:80]
    temp_arn = _ensure_state_machine(sfn, name, json.dumps(definition), machine["roleArn"])
    original = execution_arn.rsplit(":", 1)[-1]
    run_name = f"{_safe_name(original, 40)}-from-{_safe_name(state, 20)}-{int(time.time() * 1000) % 10**9}"
    started = sfn.start_execution(stateMachineArn=temp_arn, name=run_name[:80],
                                  input=json.dumps(state_input))
    return {"executionArn": started["executionArn"], "stateMachineArn": temp_arn}


def _ensure_state_machine(sfn: Any, name: str, definition: str, role_arn: str) -> str:
    for machine in list_state_machines(sfn):
        if machine["name"] == name:
            sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=definition,
                                     roleArn=role_arn)
            return machine["stateMachineArn"]
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn,
                                    tags=[{"key": "stepml:temporary", "value": "rerun"}])["stateMachineArn"]


# -- logs ----------------------------------------------------------------------------------
@dataclass
class LogLine:
    state: str
    group: str
    stream: str
    timestamp: int
    message: str


def _epoch_ms(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def handler_logs(logs: Any, runs: dict[str, StateRun], state: str | None = None) -> list[LogLine]:
    """CloudWatch lines of each Task's Lambda function during that state's latest visit."""
    lines: list[LogLine] = []
    for run in runs.values():
        if (state and run.name != state) or not run.resource or ":function:" not in f":{run.resource}":
            continue
        function = run.resource.split(":function:")[-1].split(":")[0]
        group = f"/aws/lambda/{function}"
        start, end = _epoch_ms(run.entered), _epoch_ms(run.exited)
        lines += _filter(logs, run.name, group, startTime=start - 1000 if start else None,
                         endTime=end + 1000 if end else None)
    return sorted(lines, key=lambda line: line.timestamp)


def training_logs(logs: Any, runs: dict[str, StateRun]) -> list[LogLine]:
    """SageMaker training job logs of the job this execution started (its name is in the output
    of the state that started it)."""
    job = None
    for run in runs.values():
        document = _json(run.output)
        job = (document.get("training_job") or {}).get("name") if isinstance(document, dict) else None
        if job:
            break
    if not job:
        return []
    return _filter(logs, "training", TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job}/")


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _filter(logs: Any, state: str, group: str, **criteria: Any) -> list[LogLine]:
    criteria = {k: v for k, v in criteria.items() if v is not None}
    lines: list[LogLine] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, **criteria):
            lines += [LogLine(state, group, e.get("logStreamName", ""), e["timestamp"], e["message"])
                      for e in page["events"]]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return lines
