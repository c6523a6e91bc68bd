"""The workflow commands against a local cloud through --endpoint-url, as a user would run them
with `stepml local-cloud` in another terminal."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from infra_scripts import executions as ex
from tests.workflow.helpers import chain_definition, create_machine, start, wait_status


@pytest.fixture(scope="module")
def machine(cloud, step_arn) -> str:
    return create_machine(cloud, "wf-cli", chain_definition(step_arn))


@pytest.fixture
def run(cli, cloud):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [*args, "--endpoint-url", cloud.url, "--region", cloud.region],
                             terminal_width=200)

    return invoke


def test_list_status_and_history(cloud, machine, run):
    arn = start(cloud, machine, "cli-failed", {"fail_always": ["Train"]})
    wait_status(cloud, arn)
    listed = run("list", "--state-machine", "wf-cli")
    assert listed.exit_code == 0, listed.output
    assert "cli-failed" in listed.output and "FAILED" in listed.output
    status = run("status", "cli-failed")  # a bare name is found in any state machine
    assert status.exit_code == 0, status.output
    for expected in ("Prepare", "succeeded", "Train", "caught", "DeterministicError", "Failed", "failed"):
        assert expected in status.output
    assert "console.aws.amazon.com" not in status.output  # local endpoint: no AWS deep links
    history = run("history", arn)
    assert history.exit_code == 0
    assert "ExecutionStarted" in history.output and "FailStateEntered" in history.output


def test_redrive_and_rerun_commands(cloud, machine, run):
    arn = start(cloud, machine, "cli-redrive", {"fail_once": ["Deploy"]})
    wait_status(cloud, arn)
    redriven = run("redrive", arn, "--follow")
    assert redriven.exit_code == 0, redriven.output
    assert "SUCCEEDED" in redriven.output
    refused = run("redrive", arn)
    assert refused.exit_code == 1 and "ExecutionNotRedrivable" in refused.output
    clean = start(cloud, machine, "cli-rerun-source", {})
    wait_status(cloud, clean)
    rerun = run("rerun", clean, "--from", "Deploy", "--follow")
    assert rerun.exit_code == 0 and "wf-cli-from-Deploy" in rerun.output, rerun.output
    unknown = run("rerun", clean, "--from", "Nope")
    assert unknown.exit_code == 1 and "UnknownState" in unknown.output


def test_unknown_and_malformed_executions_are_clear_errors(run):
    missing = run("status", "arn:aws:states:us-east-1:123456789012:execution:wf-cli:ghost")
    assert missing.exit_code == 1 and "ExecutionDoesNotExist" in missing.output
    malformed = run("status", "arn:aws:states:nonsense")
    assert malformed.exit_code == 1 and "InvalidArn" in malformed.output
    unnamed = run("history", "no-such-execution-name")
    assert unnamed.exit_code == 1 and "no execution named" in unnamed.output


def test_logs_reads_handler_and_training_logs_from_cloudwatch(cloud, machine, run):
    arn = start(cloud, machine, "cli-logs", {"training_job": {"name": "job-cli-logs"}})
    wait_status(cloud, arn)
    runs = ex.state_runs(cloud.boto3_client("stepfunctions").get_execution_history(
        executionArn=arn, maxResults=1000)["events"])
    logs = cloud.boto3_client("logs")
    # The Lambda runtime publishes each invocation's output to /aws/lambda/<function> itself;
    # a training job's log is written here as the training extension would write it.
    group, stream = "/aws/sagemaker/TrainingJobs", "job-cli-logs/algo-1-1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello from training"}])
    assert runs["Train"].entered  # the state ran, so its invocation's log lines exist
    only_train = run("logs", arn, "--state", "Train")
    assert only_train.exit_code == 0 and "REPORT RequestId" in only_train.output, only_train.output
    everything = run("logs", arn)
    assert "hello from training" in everything.output
    wrong = run("logs", arn, "--state", "Nope")
    assert wrong.exit_code == 1 and "did not run" in wrong.output
