"""Small throwaway state machines for the workflow tests: a few Lambda Task states on one
function that records every call and can fail once (a file marker) to exercise redrive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.localcloud.lambda_helpers import create_function, lambda_role

FUNCTION = "wf-step"

# Called by every Task with {"state", "execution", "input"}. Records "<execution> <state>";
# fails once per execution for states in input["fail_once"] (a marker file remembers), always for
# input["fail_always"]; sleeps input["slow"] seconds on the call after a failure (so a redriven
# run is observably RUNNING).
STEP_SOURCE = '''
import json, os, time

class EndpointNotReady(Exception):
    """Stands in for a transient error that exhausted its retries: not caught."""

class DeterministicError(Exception):
    """Caught into Cleanup by the throwaway machines."""

def handler(event, context):
    state, execution, doc = event["state"], event["execution"], event.get("input") or {}
    folder = os.environ["CALLS_DIR"]
    with open(os.path.join(folder, "calls.log"), "a") as log:
        log.write(f"{execution} {state}\\n")
    marker = os.path.join(folder, f"failed-{execution}-{state}")
    if state in doc.get("fail_always", []):
        raise DeterministicError(f"{state} always fails")
    if state in doc.get("fail_once", []):
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise EndpointNotReady(f"{state} failed once")
        time.sleep(doc.get("slow", 0))
    return {**doc, "visited": doc.get("visited", []) + [state]}
'''


def deploy_step_function(cloud: Any, calls_dir: Path) -> str:
    return create_function(cloud, FUNCTION, STEP_SOURCE, timeout=30,
                           Environment={"Variables": {"CALLS_DIR": str(calls_dir)}})["FunctionArn"]


def task(function_arn: str, next_state: str | None, catch_to: str | None = None) -> dict:
    state: dict[str, Any] = {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": {
            "state.$": "$$.State.Name", "execution.$": "$$.Execution.Name", "input.$": "$"}},
        "OutputPath": "$.Payload",
    }
    state.update({"Next": next_state} if next_state else {"End": True})
    if catch_to:
        state["Catch"] = [{"ErrorEquals": ["DeterministicError"], "Next": catch_to,
                           "ResultPath": "$.error"}]
    return state


def chain_definition(function_arn: str, names: tuple[str, ...] = ("Prepare", "Train", "Deploy"),
                     wait_after_first: int = 0) -> dict:
    """names[0] → (Pause) → names[1] → … → Done, each Task catching DeterministicError into
    Cleanup → Failed, like the pipeline."""
    states: dict[str, dict] = {}
    for index, name in enumerate(names):
        following = names[index + 1] if index + 1 < len(names) else "Done"
        if index == 0 and wait_after_first:
            states["Pause"] = {"Type": "Wait", "Seconds": wait_after_first, "Next": following}
            following = "Pause"
        states[name] = task(function_arn, following, catch_to="Cleanup")
    states["Done"] = {"Type": "Succeed"}
    states["Cleanup"] = {"Type": "Pass", "Next": "Failed"}
    states["Failed"] = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    return {"Comment": "throwaway test machine", "StartAt": names[0], "States": states}


def create_machine(cloud: Any, name: str, definition: dict) -> str:
    sfn = cloud.boto3_client("stepfunctions")
    return sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                    roleArn=lambda_role(cloud, "wf-states-role"))["stateMachineArn"]


def start(cloud: Any, machine_arn: str, name: str, document: dict | None = None) -> str:
    return cloud.boto3_client("stepfunctions").start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps(document or {}))["executionArn"]


def wait_status(cloud: Any, execution_arn: str, wanted: tuple[str, ...] = ("SUCCEEDED", "FAILED",
                "ABORTED", "TIMED_OUT"), timeout_s: float = 120) -> dict:
    sfn, deadline = cloud.boto3_client("stepfunctions"), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in wanted:
            return described
        time.sleep(0.1)
    raise AssertionError(f"{execution_arn} still {described['status']} after {timeout_s}s")


def calls(calls_dir: Path, execution: str) -> list[str]:
    """States the function ran for one execution, in order."""
    log = calls_dir / "calls.log"
    if not log.exists():
        return []
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()
            if line.split(" ", 1)[0] == execution]


def history_types(cloud: Any, execution_arn: str) -> list[str]:
    events = cloud.boto3_client("stepfunctions").get_execution_history(
        executionArn=execution_arn, maxResults=1000)["events"]
    return [event["type"] for event in events]
