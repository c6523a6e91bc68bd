"""CreateModel, CreateEndpointConfig, DeployEndpoint, CheckEndpoint, RegisterAutoscaling."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from handlers import (
    check_endpoint,
    common,
    create_endpoint_config,
    create_model,
    deploy_endpoint,
    register_autoscaling,
)
from handlers.errors import (
    EndpointFailed,
    EndpointTimedOut,
    RequestRefused,
    RolloutRolledBack,
    TransientAwsError,
)
from statemachine.workflow import DETERMINISTIC_ERRORS
from tests.handlers.conftest import (
    CONFIG,
    INFERENCE_IMAGE_URI,
    REGION,
    SAGEMAKER_ROLE_ARN,
    Counts,
    call,
    call_twice,
    freeze_time,
    sagemaker_backend,
)

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def sagemaker() -> Any:
    return common.client("sagemaker")


def autoscaling() -> Any:
    return common.client("application-autoscaling")


# -- CreateModel -------------------------------------------------------------------------------

def test_create_model(trained: dict) -> None:
    doc = call(create_model, trained)
    name = trained["run_id"]
    assert doc["model"] == {"name": name}
    model = sagemaker().describe_model(ModelName=name)
    assert model["ExecutionRoleArn"] == SAGEMAKER_ROLE_ARN
    container = model["PrimaryContainer"]
    assert container["Image"] == INFERENCE_IMAGE_URI
    assert container["ModelDataUrl"] == trained["training_job"]["model_artifact"]
    # The serving container reads code from model.tar.gz's code/ only, never an S3 source dir.
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "serve_entry.py",
                                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                                        "SAGEMAKER_REGION": REGION,
                                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}


def test_create_model_idempotent(trained: dict, aws: Counts) -> None:
    assert call_twice(create_model, trained)["model"]["name"] == trained["run_id"]
    assert aws.models() == 1


def retag(arn: str, run_id: str) -> None:
    sagemaker().delete_tags(ResourceArn=arn, TagKeys=["stepml:run-id"])
    sagemaker().add_tags(ResourceArn=arn, Tags=[{"Key": "stepml:run-id", "Value": run_id}])


def test_create_model_never_reuses_another_runs_model(trained: dict) -> None:
    """A reused execution name: the model of that name is an older run's and would serve its
    weights; refused, with the reason, into Cleanup."""
    call(create_model, trained)
    retag(sagemaker().describe_model(ModelName=trained["run_id"])["ModelArn"], "an-older-run")
    with pytest.raises(RequestRefused, match="is not this run's"):
        call(create_model, trained)


def test_create_model_never_reuses_a_model_of_other_data(trained: dict) -> None:
    """`stepml rerun --from StartSageMakerTraining` trains a new artifact: the run's existing
    model points at the old one, so it is refused rather than silently served."""
    call(create_model, trained)
    retrained = {**trained, "training_job": {**trained["training_job"],
                                             "model_artifact": "s3://elsewhere/model.tar.gz"}}
    with pytest.raises(RequestRefused, match="exists with model data"):
        call(create_model, retrained)


# -- CreateEndpointConfig ----------------------------------------------------------------------

@pytest.fixture
def modelled(trained: dict) -> dict:
    return call(create_model, trained)


def test_create_endpoint_config(modelled: dict) -> None:
    doc = call(create_endpoint_config, modelled)
    name = modelled["run_id"]
    assert doc["endpoint_config"] == {"name": name, "variant": "AllTraffic"}
    config = sagemaker().describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"] == [{
        "VariantName": "AllTraffic", "ModelName": name,
        "InstanceType": CONFIG.endpoint_instance_type,
        "InitialInstanceCount": CONFIG.endpoint_instance_count, "InitialVariantWeight": 1.0}]


def test_create_endpoint_config_idempotent(modelled: dict, aws: Counts) -> None:
    call_twice(create_endpoint_config, modelled)
    assert aws.endpoint_configs() == 1


def test_create_endpoint_config_refuses_another_runs_or_another_shape(modelled: dict) -> None:
    call(create_endpoint_config, modelled)
    bigger = {**modelled, "endpoint": {**modelled["endpoint"], "instance_count": 3}}
    with pytest.raises(RequestRefused, match="exists with variants"):
        call(create_endpoint_config, bigger)
    arn = sagemaker().describe_endpoint_config(EndpointConfigName=modelled["run_id"])["EndpointConfigArn"]
    retag(arn, "an-older-run")
    with pytest.raises(RequestRefused, match="is not this run's"):
        call(create_endpoint_config, modelled)


# -- DeployEndpoint ----------------------------------------------------------------------------

@pytest.fixture
def configured(modelled: dict) -> dict:
    return call(create_endpoint_config, modelled)


def test_deploy_creates_the_endpoint(configured: dict) -> None:
    doc = call(deploy_endpoint, configured)
    assert doc["endpoint"]["action"] == "created"
    assert doc["endpoint"]["status"] == "Deploying"
    assert doc["endpoint"]["name"] == CONFIG.endpoint_name
    endpoint = sagemaker().describe_endpoint(EndpointName=CONFIG.endpoint_name)
    assert endpoint["EndpointConfigName"] == configured["endpoint_config"]["name"]


def test_deploy_idempotent(configured: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry after the create went through reports the same action, so Cleanup still knows
    this run created the endpoint."""
    freeze_time(monkeypatch, deploy_endpoint, 1_700_000_000.0)
    assert call_twice(deploy_endpoint, configured)["endpoint"]["action"] == "created"
    assert aws.endpoints() == 1


@pytest.fixture
def serving_elsewhere(configured: dict) -> str:
    """An endpoint of the same name already serving a previous run's config, autoscaled."""
    client = sagemaker()
    client.create_model(ModelName="previous-run", ExecutionRoleArn=SAGEMAKER_ROLE_ARN,
                        PrimaryContainer={"Image": INFERENCE_IMAGE_URI})
    client.create_endpoint_config(EndpointConfigName="previous-run", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "previous-run", "InstanceType": "ml.c5.large",
        "InitialInstanceCount": 1}])
    client.create_endpoint(EndpointName=CONFIG.endpoint_name, EndpointConfigName="previous-run",
                           Tags=[{"Key": "stepml:run-id", "Value": "previous-run"}])
    autoscaling().register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{CONFIG.endpoint_name}/variant/AllTraffic",
        ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=2)
    return "previous-run"


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """moto lacks UpdateEndpoint: stand in for it by moving moto's stored endpoint to the new
    config (the local cloud implements the real blue/green update)."""
    calls: list[dict] = []

    def update_endpoint(**request: Any) -> dict:
        calls.append(request)
        endpoint = sagemaker_backend().endpoints[request["EndpointName"]]
        endpoint.endpoint_config_name = request["EndpointConfigName"]
        return {"EndpointArn": endpoint.arn}

    monkeypatch.setattr(common.client("sagemaker"), "update_endpoint", update_endpoint)
    return calls


def test_deploy_updates_an_existing_endpoint(configured: dict, serving_elsewhere: str,
                                             updates: list[dict], aws: Counts) -> None:
    doc = call(deploy_endpoint, configured)

    assert doc["endpoint"]["action"] == "updated"
    assert doc["endpoint"]["previous_config"] == serving_elsewhere
    [update] = updates
    config = configured["endpoint_config"]["name"]
    assert (update["EndpointName"], update["EndpointConfigName"]) == (CONFIG.endpoint_name, config)
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert policy["TrafficRoutingConfiguration"]["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 25}
    alarms = [a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    described = boto3.client("cloudwatch", region_name=CONFIG.region).describe_alarms(
        AlarmNames=alarms)["MetricAlarms"]
    assert {a["MetricName"] for a in described} == {"Invocation5XXErrors", "InvocationModelErrors",
                                                    "ModelLatency"}
    for alarm in described:  # the new fleet only
        assert {"Name": "EndpointConfigName", "Value": config} in alarm["Dimensions"]
    # Only the model changed: autoscaling stays registered, as SageMaker allows.
    assert len(autoscaling().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]) == 1
    assert aws.endpoints() == 1


def test_deploy_deregisters_autoscaling_when_the_instance_type_changes(
        configured: dict, serving_elsewhere: str, updates: list[dict]) -> None:
    doc = {**configured, "endpoint": {**configured["endpoint"], "instance_type": "ml.c5.xlarge"}}
    call(deploy_endpoint, doc)
    assert autoscaling().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_deploy_update_idempotent(configured: dict, serving_elsewhere: str, updates: list[dict],
                                  aws: Counts) -> None:
    first = call(deploy_endpoint, configured)
    second = call(deploy_endpoint, configured)
    # No second update. A retry can't recover previous_config (informational only): the
    # endpoint no longer names it.
    assert len(updates) == 1
    assert second["endpoint"]["action"] == first["endpoint"]["action"] == "updated"
    assert aws.endpoints() == 1


@pytest.mark.parametrize("status", ["Creating", "Updating", "RollingBack"])
def test_deploy_waits_for_a_busy_endpoint(configured: dict, serving_elsewhere: str,
                                          updates: list[dict], status: str) -> None:
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_status = status
    with pytest.raises(TransientAwsError, match=status):
        call(deploy_endpoint, configured)
    assert updates == []


def test_deploy_refuses_a_failed_endpoint(configured: dict, serving_elsewhere: str,
                                          updates: list[dict]) -> None:
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_status = "Failed"
    with pytest.raises(EndpointFailed, match="Failed"):
        call(deploy_endpoint, configured)
    assert updates == []


# -- CheckEndpoint -----------------------------------------------------------------------------

def test_check_endpoint_in_service(deployed: dict) -> None:
    doc = call(check_endpoint, deployed)
    assert doc["endpoint"]["status"] == "InService"
    assert doc["endpoint"]["instance_count"] == CONFIG.endpoint_instance_count
    assert doc["endpoint"]["action"] == "created"


def test_check_endpoint_idempotent(deployed: dict, aws: Counts) -> None:
    assert call_twice(check_endpoint, deployed)["endpoint"]["status"] == "InService"
    assert aws.endpoints() == 1


def test_check_endpoint_still_creating(deployed: dict) -> None:
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_status = "Creating"
    assert call(check_endpoint, deployed)["endpoint"]["status"] == "Creating"


def test_check_endpoint_times_out_into_cleanup(deployed: dict) -> None:
    """An endpoint stuck Updating past endpoint.max_wait_seconds (counted from DeployEndpoint's
    first attempt) ends the poll loop with EndpointTimedOut, a Cleanup-bound error."""
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_status = "Updating"
    assert deployed["endpoint"]["max_wait_seconds"] == CONFIG.endpoint_max_wait_seconds
    late = {**deployed, "endpoint": {**deployed["endpoint"], "started_at": time.time() - 10,
                                     "max_wait_seconds": 5}}
    with pytest.raises(EndpointTimedOut, match="still Updating after 5 s"):
        call(check_endpoint, late)
    assert call(check_endpoint, deployed)["endpoint"]["status"] == "Updating"  # within the deadline
    assert "EndpointTimedOut" in DETERMINISTIC_ERRORS


def test_check_endpoint_failed(deployed: dict) -> None:
    endpoint = sagemaker_backend().endpoints[CONFIG.endpoint_name]
    endpoint.endpoint_status = "Failed"
    endpoint.failure_reason = ("The primary container for production variant AllTraffic did not "
                               "pass the ping health check.")
    with pytest.raises(EndpointFailed, match="did not pass the ping health check"):
        call(check_endpoint, deployed)


def test_check_endpoint_rolled_back(deployed: dict) -> None:
    """A rolled-back update leaves the endpoint InService on the previous config: a failure."""
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_config_name = "previous-run"
    with pytest.raises(RolloutRolledBack, match="stayed on previous-run"):
        call(check_endpoint, deployed)


# -- RegisterAutoscaling -----------------------------------------------------------------------

def test_register_autoscaling(serving: dict) -> None:
    doc = call(register_autoscaling, serving)
    resource_id = f"endpoint/{CONFIG.endpoint_name}/variant/AllTraffic"
    policy_name = f"{CONFIG.endpoint_name}-invocations-per-instance"
    assert doc["autoscaling"]["resource_id"] == resource_id
    assert doc["autoscaling"]["policy_name"] == policy_name
    assert doc["autoscaling"]["registered"] is True
    [target] = autoscaling().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"]) == (resource_id, DIMENSION)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)
    [policy] = autoscaling().describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyName"] == policy_name
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 50.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "SageMakerVariantInvocationsPerInstance"
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (300, 60)


def test_register_autoscaling_idempotent(serving: dict) -> None:
    call_twice(register_autoscaling, serving)
    assert len(autoscaling().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]) == 1
    assert len(autoscaling().describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1


def test_register_autoscaling_overrides(serving: dict) -> None:
    doc = {**serving, "autoscaling": {**serving["autoscaling"], "min": 2, "max": 5, "target": 120}}
    call(register_autoscaling, doc)
    [target] = autoscaling().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 5)
    [policy] = autoscaling().describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 120.0
