"""The endpoint and autoscaling extensions lean on a few moto internals; if a moto upgrade moves
them, fail here with a message that says which, instead of deep inside an end-to-end run."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)[1:]  # without self


@pytest.fixture
def sagemaker_backend() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": "img", "ModelDataUrl": "s3://b/model.tar.gz", "Environment": {"A": "1"}})
        client.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        client.create_endpoint(EndpointName="e", EndpointConfigName="c")
        yield get_backend("sagemaker")[DEFAULT_ACCOUNT_ID][REGION]


def test_sagemaker_backend_methods_keep_the_wrapped_signatures() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    expected = {
        "create_endpoint": ["endpoint_name", "endpoint_config_name", "tags"],
        "delete_endpoint": ["endpoint_name"],
        "update_endpoint_weights_and_capacities": ["endpoint_name",
                                                   "desired_weights_and_capacities"],
    }
    for name, wanted in expected.items():
        assert parameters(getattr(SageMakerModelBackend, name)) == wanted, (
            f"SageMakerModelBackend.{name} changed its parameters; sagemaker_endpoints.install "
            f"wraps it with {wanted} (moto's responses call it with keywords)")


def test_sagemaker_records_have_what_the_endpoints_read(sagemaker_backend: Any) -> None:
    assert isinstance(sagemaker_backend.endpoints, dict), "backend.endpoints is no longer a dict"
    assert "c" in sagemaker_backend.endpoint_configs, "backend.endpoint_configs moved"
    record = sagemaker_backend.endpoints["e"]
    for attribute in ("endpoint_status", "failure_reason", "production_variants",
                      "last_modified_time", "endpoint_config_name", "arn"):
        assert hasattr(record, attribute), f"FakeEndpoint has no .{attribute}; the endpoints set it"
    assert record.production_variants[0]["CurrentInstanceCount"] == 1, (
        "FakeEndpoint.production_variants rows changed shape (VariantName/…InstanceCount)")
    config = sagemaker_backend.describe_endpoint_config("c")
    assert config["ProductionVariants"][0]["ModelName"] == "m", (
        "describe_endpoint_config() no longer returns the response dict with ProductionVariants")
    model = sagemaker_backend.describe_model("m")
    assert model.primary_container["ModelDataUrl"] == "s3://b/model.tar.gz", (
        "describe_model() no longer returns a Model with .primary_container")
    assert hasattr(model, "containers"), "Model lost .containers"


def test_describe_endpoint_serialises_the_attributes_the_endpoints_set(
        sagemaker_backend: Any) -> None:
    from moto.core.utils import utcnow

    record = sagemaker_backend.endpoints["e"]
    record.failure_reason = "boom"
    record.pending_deployment_summary = {"EndpointConfigName": "c", "StartTime": utcnow()}
    description = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="e")
    assert description["FailureReason"] == "boom", (
        "FakeEndpoint attributes no longer reach DescribeEndpoint by name (gen_response_object)")
    assert description["PendingDeploymentSummary"]["EndpointConfigName"] == "c"


def test_sagemaker_exceptions_and_arn_helpers_exist() -> None:
    from moto.sagemaker.exceptions import AWSValidationException, ValidationError
    from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig

    assert ValidationError(message="x").code == "ValidationException"
    assert AWSValidationException("x").code == "ValidationException"
    assert FakeEndpoint.arn_formatter("e", "1", REGION).endswith(":endpoint/e")
    assert FakeEndpointConfig.arn_formatter("c", "1", REGION).endswith(":endpoint-config/c")


def test_moto_still_lacks_the_apis_the_extensions_answer() -> None:
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
    from moto.sagemaker.responses import SageMakerResponse

    assert not hasattr(SageMakerResponse, "update_endpoint"), (
        "moto now implements UpdateEndpoint; sagemaker_endpoints answers it first — check that "
        "its blue/green route should still shadow moto's")
    assert not hasattr(ApplicationAutoScalingResponse, "describe_scaling_activities"), (
        "moto now implements DescribeScalingActivities; autoscaling answers it first — check "
        "whether to record activities in moto's backend instead")


def test_invoke_endpoint_url_shape_is_what_the_endpoints_route() -> None:
    from moto.sagemakerruntime.urls import url_paths

    assert "{0}/endpoints/(?P<name>[^/]+)/invocations$" in url_paths, (
        "moto's sagemaker-runtime InvokeEndpoint path moved; update INVOKE_PATH")


def test_applicationautoscaling_backend_has_what_the_controller_reads() -> None:
    from moto.applicationautoscaling.exceptions import AWSValidationException
    from moto.applicationautoscaling.models import (
        ApplicationAutoscalingBackend,
        FakeApplicationAutoscalingPolicy,
    )

    assert parameters(ApplicationAutoscalingBackend.register_scalable_target)[:3] == [
        "namespace", "r_id", "dimension"], (
        "register_scalable_target(namespace, r_id, dimension, …) changed; autoscaling wraps it")
    assert parameters(ApplicationAutoscalingBackend.deregister_scalable_target) == [
        "namespace", "r_id", "dimension"], "deregister_scalable_target() changed; autoscaling wraps it"
    assert parameters(ApplicationAutoscalingBackend.delete_scaling_policy) == [
        "policy_name", "service_namespace", "resource_id", "scalable_dimension"], (
        "delete_scaling_policy() changed its parameters; autoscaling wraps it")
    assert parameters(ApplicationAutoscalingBackend.describe_scalable_targets) == [
        "namespace", "r_ids", "dimension"], "describe_scalable_targets() changed its parameters"
    assert AWSValidationException("x").error_type == "ValidationException", (
        "applicationautoscaling's AWSValidationException(message) changed")
    with mock_aws():
        client = boto3.client("application-autoscaling", region_name=REGION)
        resource = "endpoint/e/variant/AllTraffic"
        dimension = "sagemaker:variant:DesiredInstanceCount"
        client.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                        ScalableDimension=dimension, MinCapacity=1, MaxCapacity=2)
        client.put_scaling_policy(
            PolicyName="p", ServiceNamespace="sagemaker", ResourceId=resource,
            ScalableDimension=dimension, PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": 50.0})
        backend = get_backend("application-autoscaling")[DEFAULT_ACCOUNT_ID][REGION]
        [target] = backend.describe_scalable_targets("sagemaker", None, dimension)
        for attribute in ("resource_id", "scalable_dimension", "min_capacity", "max_capacity",
                          "suspended_state"):
            assert hasattr(target, attribute), f"FakeScalableTarget has no .{attribute}"
        [(key, policy)] = backend.policies.items()
        assert key == FakeApplicationAutoscalingPolicy.formulate_key(
            "sagemaker", resource, dimension, "p"), "policies are no longer keyed by formulate_key"
        for attribute in ("policy_name", "policy_type", "service_namespace", "resource_id",
                          "scalable_dimension"):
            assert hasattr(policy, attribute), f"FakeApplicationAutoscalingPolicy lost .{attribute}"
        assert policy.target_tracking_scaling_policy_configuration == {"TargetValue": 50.0}, (
            "the policy's TargetTrackingScalingPolicyConfiguration is no longer kept as given")


def test_cloudwatch_put_metric_data_takes_namespace_and_data() -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    assert parameters(CloudWatchBackend.put_metric_data) == ["namespace", "metric_data"], (
        "CloudWatchBackend.put_metric_data(namespace, metric_data) changed; the endpoints publish "
        "AWS/SageMaker invocation metrics through it")


def test_cloudwatch_seams_of_alarms_and_exact_dimensions() -> None:
    """cloudwatch/metrics.py calls moto's get_metric_statistics with a view holding only
    get_all_metrics(); cloudwatch/alarms.py reads alarms' and datapoints' fields."""
    from moto.cloudwatch.models import CloudWatchBackend

    assert parameters(CloudWatchBackend.get_metric_statistics) == [
        "namespace", "metric_name", "start_time", "end_time", "period", "stats", "dimensions", "unit"]
    source = inspect.getsource(CloudWatchBackend.get_metric_statistics)
    assert "self.get_all_metrics()" in source and source.count("self.") == 1, "reads more state now"
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        cloudwatch.put_metric_alarm(AlarmName="a", Namespace="N", MetricName="M", Statistic="Sum",
                                    Period=10, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanOrEqualToThreshold",
                                    Dimensions=[{"Name": "D", "Value": "v"}])
        cloudwatch.put_metric_data(Namespace="N", MetricData=[{
            "MetricName": "M", "Value": 2, "Dimensions": [{"Name": "D", "Value": "v"}]}])
        backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION]
        alarm = backend.alarms["a"]
        for name in ("namespace", "metric_name", "dimensions", "statistic", "period", "evaluation_periods",
                     "datapoints_to_alarm", "threshold", "comparison_operator", "treat_missing_data",
                     "state_value", "state_reason", "state_updated_timestamp"):
            assert hasattr(alarm, name), name
        [datum] = backend.get_all_metrics()
        assert (datum.namespace, datum.name, datum.value) == ("N", "M", 2.0)
        assert [(d.name, d.value) for d in datum.dimensions] == [("D", "v")] and datum.timestamp
