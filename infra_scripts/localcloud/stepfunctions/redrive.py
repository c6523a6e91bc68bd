"""Step Functions ``RedriveExecution`` on the local cloud, with AWS's semantics (moto 5.2 lacks it).

Only FAILED, ABORTED and TIMED_OUT executions of STANDARD state machines are redrivable. The
execution keeps its ARN; the run resumes at the state that did not succeed, with the input that
state was entered with (its ``StateEntered`` event), so states that succeeded are not run again:
their results are already part of that input. ``redriveCount``/``redriveDate``/``redriveStatus``
appear in DescribeExecution and ListExecutions (which honours ``redriveFilter``), and the history
continues with an ``ExecutionRedriven`` event.

How: moto's bundled interpreter runs an execution as ``ExecutionWorker`` → ``Environment`` →
``Program.eval``. A redrive builds a fresh ``Environment`` from the same worker (same context
object: execution ARN, name, input, start time) that shares the original's ``EventManager`` (so
event ids continue), re-parses the same definition, points the program's ``StartAt`` at the
resume state and runs it on a thread, as the worker does for a new execution. No ASL is
interpreted here. Limitation: a failed Parallel/Map state is rerun whole (AWS reruns only the
failed branches/iterations).
"""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, json_response, match_target

REDRIVABLE = ("FAILED", "ABORTED", "TIMED_OUT")
MAX_REDRIVES = 1000
REDRIVE_WINDOW = datetime.timedelta(days=14)
MAX_HISTORY_EVENTS = 25_000
_lock = threading.Lock()  # one redrive at a time: the status check and the restart are atomic


class NotRedrivable(Exception):
    pass


def redrive_count(execution: Any) -> int:
    return getattr(execution, "redrive_count", 0)


def not_redrivable_reason(execution: Any) -> str | None:
    """Why AWS would refuse to redrive this execution now, or None."""
    status = execution.status
    if execution.sm_type == "EXPRESS":
        return "Redrive is not supported for EXPRESS state machine executions"
    if status not in REDRIVABLE:
        return f"Execution is {status} and cannot be redriven"
    if getattr(execution, "exec_worker", None) is None or execution.exec_worker.env is None:
        return "Execution has no recorded run to redrive"
    if redrive_count(execution) >= MAX_REDRIVES:
        return f"Execution was redriven {MAX_REDRIVES} times, the maximum"
    if _now() - execution.start_date > REDRIVE_WINDOW:
        return "Execution started more than 14 days ago"
    if len(execution.exec_worker.env.event_manager.get_event_history()) >= MAX_HISTORY_EVENTS:
        return f"Execution history has reached {MAX_HISTORY_EVENTS} events"
    return None


def resume_point(events: list[dict], state_names: set[str], start_at: str,
                 execution_input: Any) -> tuple[str, Any]:
    """The top-level state that did not succeed, and the input it was entered with.

    A state is open from its StateEntered to its StateExited event; the last one left open is
    where the run stopped. Inner states of Parallel/Map branches are skipped (their parent is
    rerun). With no state entered at all, the run restarts at StartAt with the execution input.
    """
    last_entered: tuple[str, Any] | None = None
    open_state: tuple[str, Any] | None = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered and entered["name"] in state_names:
            last_entered = open_state = (entered["name"], json.loads(entered.get("input") or "{}"))
        elif exited and open_state and exited["name"] == open_state[0]:
            open_state = None
    # Stopped between two states (e.g. aborted right after an exit): rerun the last one entered.
    return open_state or last_entered or (start_at, execution_input)


def redrive(execution: Any) -> datetime.datetime:
    """Restart ``execution`` (a moto parser Execution) at its unsuccessful state."""
    from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.flow.start_at import StartAt

    with _lock:
        reason = not_redrivable_reason(execution)
        if reason:
            raise NotRedrivable(reason)
        worker = execution.exec_worker
        events = worker.env.event_manager.get_event_history()
        program = worker._get_evaluation_entrypoint()
        state, state_input = resume_point(events, set(program.states.states),
                                          program.start_at.start_at_name, execution.input_data)
        env = _continued_environment(worker, events)
        count, now = redrive_count(execution) + 1, _now()
        env.states.context_object.context_object_data["Execution"].update(
            RedriveCount=count, RedriveTime=now.isoformat())
        env.event_manager.add_event(
            context=env.event_history_context, event_type=HistoryEventType.ExecutionRedriven,
            event_details={"executionRedrivenEventDetails": {"redriveCount": count}}, timestamp=now)
        env.states.reset(input_value=state_input)
        program.start_at = StartAt(start_at_name=state)  # moto types it Final; it is a plain field
        worker.env = env
        execution.redrive_count, execution.redrive_date = count, now
        execution.exec_status = ExecutionStatus.RUNNING
        execution.error = execution.cause = execution.stop_date = execution.output = None
    threading.Thread(target=_run, args=(worker, program, env), daemon=True,
                     name=f"redrive-{execution.name}").start()
    return now


def _continued_environment(worker: Any, events: list[dict]) -> Any:
    """A fresh interpreter environment whose history continues the original one."""
    previous = worker.env
    env = worker._get_evaluation_environment()
    env.event_manager = previous.event_manager
    last_id = events[-1]["id"] if events else 0
    env.event_history_context.source_event_id = last_id
    env.event_history_context.last_published_event_id = last_id
    return env


def _run(worker: Any, program: Any, env: Any) -> None:
    program.eval(env)  # runs until the program ends, like ExecutionWorker._execution_logic
    worker._execution_communication.terminated()  # reflects SUCCEEDED/FAILED/... on the execution


def redrive_fields(execution: Any, listing: bool = False) -> dict[str, Any]:
    """The redrive fields AWS adds to DescribeExecution (and, fewer, to ListExecutions items)."""
    fields: dict[str, Any] = {"redriveCount": redrive_count(execution)}
    if getattr(execution, "redrive_date", None):
        fields["redriveDate"] = execution.redrive_date
    if listing:
        return fields
    reason = not_redrivable_reason(execution)
    fields["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
    if reason:
        fields["redriveStatusReason"] = reason
    return fields


def _now() -> datetime.datetime:
    """Millisecond precision: what the Step Functions API carries in its timestamps."""
    now = datetime.datetime.now(tz=datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# -- API --------------------------------------------------------------------------------------
def _sfn_backend(cloud: LocalCloud, request: Request) -> Any:
    from moto.stepfunctions.responses import get_backend

    return get_backend(cloud.account_id, request_region(request, cloud.region))


def _handle_redrive(cloud: LocalCloud, request: Request) -> Response:
    from moto.core.exceptions import JsonRESTError

    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        return aws_error(400, "SerializationException", "request body is not JSON")
    arn = body.get("executionArn") if isinstance(body, dict) else None
    if not isinstance(arn, str) or not arn:
        return aws_error(400, "ValidationException", "executionArn is required")
    try:
        execution = _sfn_backend(cloud, request).describe_execution(arn)
    except JsonRESTError as error:
        return aws_error(error.code, error.error_type, error.message)
    try:
        date = redrive(execution)
    except NotRedrivable as error:
        return aws_error(400, "ExecutionNotRedrivable", str(error))
    return json_response(200, {"redriveDate": date.timestamp()})


def _describe_with_redrive(original: Any) -> Any:
    def describe_execution(self: Any) -> Any:
        result = original(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        result.result.update(redrive_fields(execution))
        return result

    return describe_execution


def _list_with_redrive(original: Any) -> Any:
    def list_executions(self: Any) -> Any:
        result = original(self)
        wanted = self._get_param("redriveFilter")
        backend, items = self.stepfunction_backend, []
        for item in result.result["executions"]:
            item.update(redrive_fields(backend.describe_execution(item["executionArn"]), listing=True))
            redriven = item["redriveCount"] > 0
            if wanted is None or (wanted == "REDRIVEN") == redriven:
                items.append(item)
        result.result["executions"] = items
        return result

    return list_executions


def check_moto_seams() -> None:
    """Fail loudly at start-up if the moto internals this module relies on have moved."""
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.responses import StepFunctionResponse

    needed = {
        ExecutionWorker: ("_get_evaluation_entrypoint", "_get_evaluation_environment"),
        Program: ("eval",),
        Environment: ("event_manager", "event_history_context", "states"),
        StepFunctionResponse: ("describe_execution", "list_executions", "stepfunction_backend"),
    }
    missing = [f"{owner.__name__}.{name}" for owner, names in needed.items() for name in names
               if not hasattr(owner, name) and name not in getattr(owner, "__annotations__", {})]
    if missing:
        raise RuntimeError(f"localcloud.redrive: moto internals moved ({', '.join(missing)}); "
                           "re-check it against the pinned moto version")


def install(cloud: LocalCloud) -> None:
    from moto.stepfunctions.responses import StepFunctionResponse

    check_moto_seams()
    cloud.add_route(match_target("AWSStepFunctions.RedriveExecution"),
                    lambda request: _handle_redrive(cloud, request))
    cloud.patch(StepFunctionResponse, "describe_execution",
                _describe_with_redrive(StepFunctionResponse.describe_execution))
    cloud.patch(StepFunctionResponse, "list_executions",
                _list_with_redrive(StepFunctionResponse.list_executions))
