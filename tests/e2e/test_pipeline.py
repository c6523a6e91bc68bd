"""End to end on the local cloud: the deployed state machine trains for real (SageMaker job or
EC2 instance), serves from a real endpoint, and answers a smoke prediction; a failing training
run ends in Fail via Cleanup and leaves nothing running."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud
from infra_scripts.run import execution_input, make_sample_dataset, start_execution
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = PipelineConfig(provisioned_concurrency=4, reserved_concurrency=10)
    with LocalCloud() as cloud:
        deployer = Deployer.for_local_cloud(config, cloud.url)
        deployed = deployer.deploy()
        data = make_sample_dataset(Path(tmp_path_factory.mktemp("sample")))
        dataset_uri = upload_dataset(deployer.client("s3"), config.bucket, data, "sample")
        yield cloud, deployer, deployed, dataset_uri


def run_execution(stack, document: dict, name: str) -> tuple[dict, dict]:
    _, deployer, deployed, _ = stack
    sfn = deployer.client("stepfunctions")
    arn = start_execution(sfn, deployed.state_machine_arn, document, name=name)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described, json.loads(described.get("output") or "{}")
        time.sleep(0.5)
    raise AssertionError(f"{arn} still running")


@pytest.mark.parametrize("backend", ["sagemaker", "ec2"])
def test_pipeline_reaches_succeed_with_a_correct_smoke_prediction(stack, backend):
    _, deployer, _, dataset_uri = stack
    described, output = run_execution(stack, execution_input(dataset_uri, backend, local=True),
                                      name=f"e2e-{backend}")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert output["training_job"]["backend"] == backend
    assert float(output["training_job"]["metrics"]["test_acc"]) >= 0.9
    assert output["endpoint"]["status"] == "InService"
    assert output["smoke_test"]["correct"] is True
    sagemaker = deployer.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=output["endpoint"]["name"])
    assert endpoint["EndpointConfigName"] == output["endpoint_config"]["name"]
    targets = deployer.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 2)]
    alias = deployer.client("lambda").get_alias(FunctionName=output["predict"]["function"], Name="live")
    assert alias["FunctionVersion"] == output["predict"]["version"]


def test_failing_training_ends_in_fail_via_cleanup_leaving_nothing_running(stack):
    cloud, deployer, _, dataset_uri = stack
    document = execution_input(dataset_uri, "sagemaker", local=True)
    document["training"]["hyperparameters"] = {"lr": 0}  # passes ValidateInput (>= 0), not training
    described, _ = run_execution(stack, document, name="e2e-failing")
    assert described["status"] == "FAILED"
    assert described["error"] == "TrainingFailed"
    sfn = deployer.client("stepfunctions")
    entered = [e["stateEnteredEventDetails"]["name"] for e in
               sfn.get_execution_history(executionArn=described["executionArn"],
                                         maxResults=1000)["events"]
               if "stateEnteredEventDetails" in e]
    assert entered[-2:] == ["Cleanup", "PipelineFailed"]
    sagemaker = deployer.client("sagemaker")
    running = sagemaker.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
    assert running == []
    failed_input = json.loads(described["input"])
    assert failed_input["training"]["hyperparameters"] == {"lr": 0}
    models = [m["ModelName"] for m in sagemaker.list_models()["Models"]]
    configs = [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]]
    assert not [name for name in models + configs if name.startswith("e2e-failing")]
    reservations = deployer.client("ec2").describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    assert reservations == []
