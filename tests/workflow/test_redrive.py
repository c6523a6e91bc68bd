"""RedriveExecution on the local cloud with AWS's semantics, and `rerun --from`."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from infra_scripts import executions as ex
from statemachine.workflow import DETERMINISTIC_ERRORS, TRANSIENT_ERRORS, definition_dict
from tests.workflow.helpers import (
    calls,
    chain_definition,
    create_machine,
    history_types,
    start,
    wait_status,
)


@pytest.fixture(scope="module")
def chain(cloud, step_arn) -> str:
    return create_machine(cloud, "wf-chain", chain_definition(step_arn))


def test_failed_execution_is_redriven_to_succeeded_without_rerunning_earlier_states(cloud, chain,
                                                                                   calls_dir):
    sfn = cloud.boto3_client("stepfunctions")
    arn = start(cloud, chain, "fail-once", {"fail_once": ["Deploy"]})
    failed = wait_status(cloud, arn)
    assert failed["status"] == "FAILED" and failed["error"] == "EndpointNotReady"
    assert failed["redriveCount"] == 0 and failed["redriveStatus"] == "REDRIVABLE"
    assert calls(calls_dir, "fail-once") == ["Prepare", "Train", "Deploy"]

    redriven_at = sfn.redrive_execution(executionArn=arn)["redriveDate"]
    done = wait_status(cloud, arn)

    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert done["executionArn"] == arn and done["redriveCount"] == 1
    assert done["redriveDate"] == redriven_at  # the date RedriveExecution answered, recorded
    assert done["redriveDate"] >= failed["stopDate"]
    assert done["redriveStatus"] == "NOT_REDRIVABLE"
    assert "SUCCEEDED" in done["redriveStatusReason"]
    # Prepare and Train ran once; only the failed state ran again, from its recorded input.
    assert calls(calls_dir, "fail-once") == ["Prepare", "Train", "Deploy", "Deploy"]
    assert json.loads(done["output"])["visited"] == ["Prepare", "Train", "Deploy"]
    types = history_types(cloud, arn)
    assert types.count("ExecutionRedriven") == 1
    assert types[types.index("ExecutionRedriven") - 1] == "ExecutionFailed"
    assert types[types.index("ExecutionRedriven") + 1] == "TaskStateEntered"
    assert types[-1] == "ExecutionSucceeded"
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    redriven = next(e for e in events if e["type"] == "ExecutionRedriven")
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}
    listed = sfn.list_executions(stateMachineArn=chain, redriveFilter="REDRIVEN")["executions"]
    assert [e["executionArn"] for e in listed] == [arn]
    assert listed[0]["redriveCount"] == 1


def test_redrive_of_succeeded_or_running_executions_is_refused(cloud, step_arn):
    sfn = cloud.boto3_client("stepfunctions")
    machine = create_machine(cloud, "wf-paused", chain_definition(step_arn, ("Prepare", "Finish"),
                                                                  wait_after_first=30))
    arn = start(cloud, machine, "paused")
    wait_status(cloud, arn, ("RUNNING",))
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=arn)
    assert refused.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert sfn.describe_execution(executionArn=arn)["redriveStatus"] == "NOT_REDRIVABLE"
    sfn.stop_execution(executionArn=arn)
    assert wait_status(cloud, arn)["status"] == "ABORTED"

    done_arn = start(cloud, create_machine(cloud, "wf-quick", chain_definition(step_arn, ("Only",))),
                     "quick")
    assert wait_status(cloud, done_arn)["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=done_arn)
    assert refused.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert "SUCCEEDED" in refused.value.response["Error"]["Message"]


def test_aborted_execution_resumes_at_the_state_it_was_in(cloud, step_arn, calls_dir):
    sfn = cloud.boto3_client("stepfunctions")
    machine = create_machine(cloud, "wf-abort", chain_definition(step_arn, ("Prepare", "Finish"),
                                                                 wait_after_first=2))
    arn = start(cloud, machine, "aborted")
    wait_status(cloud, arn, ("RUNNING",))
    deadline = time.monotonic() + 10
    while "WaitStateEntered" not in history_types(cloud, arn) and time.monotonic() < deadline:
        time.sleep(0.05)
    sfn.stop_execution(executionArn=arn)
    assert wait_status(cloud, arn)["status"] == "ABORTED"
    sfn.redrive_execution(executionArn=arn)
    assert wait_status(cloud, arn)["status"] == "SUCCEEDED"
    assert calls(calls_dir, "aborted") == ["Prepare", "Finish"]


def test_unknown_or_malformed_executions_are_refused(cloud):
    sfn = cloud.boto3_client("stepfunctions")
    with pytest.raises(ClientError) as missing:
        sfn.redrive_execution(executionArn="arn:aws:states:us-east-1:123456789012:execution:wf-chain:nope")
    assert missing.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
    with pytest.raises(ClientError) as malformed:
        sfn.redrive_execution(executionArn="not-an-arn")
    assert malformed.value.response["Error"]["Code"] == "InvalidArn"


def test_a_caught_error_redrives_at_the_fail_state_and_fails_again(cloud, chain, calls_dir):
    """AWS semantics: the unsuccessful state of a caught failure is the Fail state. This is why
    the pipeline catches only deterministic errors."""
    sfn = cloud.boto3_client("stepfunctions")
    arn = start(cloud, chain, "caught", {"fail_always": ["Train"]})
    assert wait_status(cloud, arn)["error"] == "DeterministicError"
    sfn.redrive_execution(executionArn=arn)
    again = wait_status(cloud, arn)
    assert again["status"] == "FAILED" and again["redriveCount"] == 1
    assert calls(calls_dir, "caught") == ["Prepare", "Train"]
    types = history_types(cloud, arn)
    assert types[types.index("ExecutionRedriven"):] == ["ExecutionRedriven", "FailStateEntered",
                                                        "ExecutionFailed"]


def test_pipeline_catches_only_deterministic_errors():
    definition = definition_dict()
    assert not set(DETERMINISTIC_ERRORS) & set(TRANSIENT_ERRORS)
    for name, state in definition["States"].items():
        if state["Type"] == "Task" and name != "Cleanup":
            assert [c["ErrorEquals"] for c in state["Catch"]] == [DETERMINISTIC_ERRORS], name
            assert state["Retry"][0]["ErrorEquals"] == TRANSIENT_ERRORS, name


def test_rerun_from_a_state_starts_a_new_execution_there_with_its_recorded_input(cloud, chain,
                                                                                 calls_dir):
    sfn = cloud.boto3_client("stepfunctions")
    original = start(cloud, chain, "rerun-source", {"seed": 7})
    assert wait_status(cloud, original)["status"] == "SUCCEEDED"

    started = ex.rerun_from(sfn, original, "Train")

    assert started["stateMachineArn"].endswith(":stateMachine:wf-chain-from-Train")
    done = wait_status(cloud, started["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["input"]) == {"seed": 7, "visited": ["Prepare"]}
    assert json.loads(done["output"])["visited"] == ["Prepare", "Train", "Deploy"]
    new_name = started["executionArn"].rsplit(":", 1)[-1]
    assert calls(calls_dir, new_name) == ["Train", "Deploy"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=started["stateMachineArn"])
                            ["definition"])
    assert definition["StartAt"] == "Train" and "Prepare" not in definition["States"]
    again = ex.rerun_from(sfn, original, "Train")  # the temporary machine is reused
    assert again["stateMachineArn"] == started["stateMachineArn"]


def test_rerun_from_an_unknown_state_or_one_that_never_ran_is_refused(cloud, chain):
    sfn = cloud.boto3_client("stepfunctions")
    original = start(cloud, chain, "rerun-refused", {"fail_always": ["Prepare"]})
    wait_status(cloud, original)
    before = len(ex.list_state_machines(sfn))
    with pytest.raises(ex.WorkflowError) as unknown:
        ex.rerun_from(sfn, original, "NoSuchState")
    assert unknown.value.code == "UnknownState" and "Prepare" in unknown.value.message
    with pytest.raises(ex.WorkflowError) as never:
        ex.rerun_from(sfn, original, "Deploy")
    assert never.value.code == "StateNeverRan"
    assert len(ex.list_state_machines(sfn)) == before
