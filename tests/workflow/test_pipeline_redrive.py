"""FULL PIPELINE (slow, ~1-2 min): upload a dataset → the S3 trigger starts one execution →
DeployEndpoint fails (a transient error that exhausts its retries, so it is not caught into
Cleanup) → RedriveExecution → SUCCEEDED, with exactly one training job.

Needs the local SageMaker training and endpoint extensions; skipped where they are absent.
The upload trigger is the stack's own (Deployer(upload_trigger=True))."""

from __future__ import annotations

import json
import time

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.awslambda.runtime import InvokeResult
from infra_scripts.localcloud.core.server import DEFAULT_EXTENSIONS, LocalCloud
from infra_scripts.localcloud.iam import least_privilege
from infra_scripts.run import execution_input, make_sample_dataset, start_execution
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig
from statemachine.workflow import SNAPSHOT_PATH, TASK_HANDLERS

NEEDED = {"infra_scripts.localcloud.sagemaker.training", "infra_scripts.localcloud.sagemaker.endpoints"}
pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not NEEDED <= set(DEFAULT_EXTENSIONS),
                       reason="local SageMaker training/endpoint extensions not installed"),
]


def attempts(state: str) -> int:
    """The first try plus the Retry budget (MaxAttempts counts retries) for transient errors."""
    retry = json.loads(SNAPSHOT_PATH.read_text())["States"][state]["Retry"][0]
    assert "TransientAwsError" in retry["ErrorEquals"]
    return 1 + retry["MaxAttempts"]


@pytest.fixture
def failing_deploy(cloud):
    """DeployEndpoint answers TransientAwsError on every attempt of its first run, then works."""
    runtime = cloud.extensions["awslambda.runtime"]
    original = runtime.invoke
    failures = fail_first_invocations(cloud, PipelineConfig().function_name("deploy_endpoint"),
                                      attempts("DeployEndpoint"))
    yield failures
    runtime.invoke = original


def fail_first_invocations(cloud: LocalCloud, function_name: str, count: int) -> list[int]:
    runtime, failures = cloud.extensions["awslambda.runtime"], []
    original = runtime.invoke

    def invoke(fn, event: str, tail_logs: bool = False, **options) -> InvokeResult:
        if fn.function_name == function_name and len(failures) < count:
            failures.append(1)
            payload = {"errorType": "TransientAwsError", "errorMessage": "ThrottlingException: Rate exceeded",
                       "stackTrace": []}
            return InvokeResult(200, json.dumps(payload).encode(), function_error="Unhandled")
        return original(fn, event, tail_logs, **options)

    cloud.patch(runtime, "invoke", invoke)
    return failures


def wait_for(sfn, arn: str, statuses: tuple[str, ...], timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] in statuses:
                return described
        except sfn.exceptions.ExecutionDoesNotExist:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{arn} not {statuses} after {timeout_s}s")


def test_deploy_endpoint_failing_once_is_redriven_to_succeeded_without_a_second_training_job(
        cloud, failing_deploy, tmp_path):
    config = PipelineConfig(provisioned_concurrency=2, reserved_concurrency=5)
    deployer = Deployer.for_local_cloud(config, cloud.url, upload_trigger=True,
                                        trigger_input={"poll_seconds": 1})
    deployer.deploy()
    s3, sfn = deployer.client("s3"), deployer.client("stepfunctions")
    jobs_before = training_jobs(deployer)  # the package's cloud is shared with other modules

    upload_dataset(s3, config.bucket, make_sample_dataset(tmp_path / "data"), "sample",
                   config.dataset_prefix)

    arn = wait_for_started(sfn, config)
    failed = wait_for(sfn, arn, ("FAILED", "SUCCEEDED"))
    assert (failed["status"], failed["error"]) == ("FAILED", "TransientAwsError"), failed.get("cause")
    assert len(failing_deploy) == attempts("DeployEndpoint")  # retries exhausted
    entered = entered_states(sfn, arn)
    assert entered[-1] == "DeployEndpoint" and "Cleanup" not in entered
    assert training_jobs(deployer) == jobs_before + 1

    sfn.redrive_execution(executionArn=arn)
    done = wait_for(sfn, arn, ("SUCCEEDED", "FAILED"))

    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert done["redriveCount"] == 1
    assert training_jobs(deployer) == jobs_before + 1
    entered = entered_states(sfn, arn)
    assert entered.count("StartSageMakerTraining") == 1 and entered.count("CreateModel") == 1
    assert entered.count("DeployEndpoint") == 2
    assert json.loads(done["output"])["smoke_test"]["correct"] is True


def wait_for_started(sfn, config: PipelineConfig, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = sfn.list_executions(stateMachineArn=config.state_machine_arn)["executions"]
        if listed:
            assert len(listed) == 1 and listed[0]["name"].startswith("upload-sample-")
            return listed[0]["executionArn"]
        time.sleep(0.5)
    raise AssertionError("the upload trigger started no execution")


def entered_states(sfn, arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def training_jobs(deployer: Deployer) -> int:
    return len(deployer.client("sagemaker").list_training_jobs()["TrainingJobSummaries"])



REUSING_STATES = ("StartSageMakerTraining", "CreateModel", "CreateEndpointConfig", "DeployEndpoint")


def lose_first_responses(cloud: LocalCloud, function_names: set[str]) -> list[str]:
    """The first invocation of each function runs (it creates what it creates), then its response
    is lost: the state sees TransientAwsError and retries, as after a Lambda timeout."""
    runtime, lost = cloud.extensions["awslambda.runtime"], []
    original = runtime.invoke

    def invoke(fn, event: str, tail_logs: bool = False, **options) -> InvokeResult:
        result = original(fn, event, tail_logs, **options)
        if fn.function_name in function_names and fn.function_name not in lost:
            lost.append(fn.function_name)
            payload = {"errorType": "TransientAwsError", "errorMessage": "the response was lost",
                       "stackTrace": []}
            return InvokeResult(200, json.dumps(payload).encode(), function_error="Unhandled")
        return result

    cloud.patch(runtime, "invoke", invoke)
    return lost


def test_retried_states_reuse_what_their_lost_attempt_made(cloud, tmp_path):
    """Each state whose first response is lost finds what that attempt made by name and reuses it
    only after reading its run tag (ListTags): one training job, one model, one config. This is
    the path that needs the ListTags actions of the least-privilege table."""
    config = PipelineConfig()
    deployer = Deployer.for_local_cloud(config, cloud.url)
    deployer.deploy()
    functions = {config.function_name(TASK_HANDLERS[state]) for state in REUSING_STATES}
    runtime = cloud.extensions["awslambda.runtime"]
    original = runtime.invoke
    jobs_before = training_jobs(deployer)
    lost = lose_first_responses(cloud, functions)
    try:
        dataset = upload_dataset(deployer.client("s3"), config.bucket,
                                 make_sample_dataset(tmp_path / "data"), "retried", config.dataset_prefix)
        sfn = deployer.client("stepfunctions")
        arn = start_execution(sfn, config.state_machine_arn,
                              execution_input(dataset, "sagemaker", local=True), name="lost-responses")
        done = wait_for(sfn, arn, ("SUCCEEDED", "FAILED"))
    finally:
        runtime.invoke = original
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert sorted(lost) == sorted(functions)
    assert training_jobs(deployer) == jobs_before + 1  # the retry reused the first attempt's job
    rows = least_privilege.needs(config, cloud.extensions["iam.enforcement"].decisions)
    list_tags = {(r.role, r.sid): r.sole_requests for r in rows if r.action == "sagemaker:ListTags"}
    assert all(count > 0 for count in list_tags.values()), list_tags
