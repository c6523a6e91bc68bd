"""Application Auto Scaling on the local cloud changes the number of model-server processes.

Windows and cooldowns are shortened through the cloud's settings so that a scale-out and the
scale-in after it happen within seconds; the stand-in model server comes from the endpoint tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from tests.localcloud.test_sagemaker_endpoints import (
    ENDPOINTS,
    client,
    create_config,
    instance_pids,
    invoke,
    standin_options,
    wait_until_settled,
    write_standin,
)

AUTOSCALING = "infra_scripts.localcloud.autoscaling.controller"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
RESOURCE = "endpoint/ep/variant/AllTraffic"
FAST = {"evaluation_period_s": 0.25, "metric_window_s": 2.0, "scale_out_evaluations": 2,
        "scale_in_evaluations": 2}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    options = {"sagemaker_endpoints": standin_options(write_standin(tmp_path)),
               "autoscaling": FAST}
    with LocalCloud(settings=LocalCloudSettings(options=options),
                    extensions=[ENDPOINTS, AUTOSCALING]) as running:
        create_config(running, "v1", {"version": "v1"})
        client(running, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="v1")
        wait_until_settled(running, "ep")
        yield running


def register(cloud: LocalCloud, minimum: int = 1, maximum: int = 2, target: float = 50.0) -> None:
    autoscaling = client(cloud, "application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION,
        MinCapacity=minimum, MaxCapacity=maximum)
    autoscaling.put_scaling_policy(
        PolicyName="per-instance", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": target,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleOutCooldown": 1, "ScaleInCooldown": 2})


def counts(cloud: LocalCloud) -> tuple[str, int, int]:
    description = client(cloud, "sagemaker").describe_endpoint(EndpointName="ep")
    variant = description["ProductionVariants"][0]
    return (description["EndpointStatus"], variant["CurrentInstanceCount"],
            variant["DesiredInstanceCount"])


def wait_for(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def activities(cloud: LocalCloud, **filters: str) -> list[dict[str, Any]]:
    return client(cloud, "application-autoscaling").describe_scaling_activities(
        ServiceNamespace="sagemaker", **filters)["ScalingActivities"]


def test_scales_out_under_load_and_back_in_when_it_stops(cloud: LocalCloud) -> None:
    register(cloud)
    stop = threading.Event()
    failures: list[str] = []

    def load() -> None:  # ~20 requests/s: far above 50 per instance per minute
        while not stop.is_set():
            try:
                invoke(cloud, "ep")
            except Exception as error:
                failures.append(repr(error))
            time.sleep(0.05)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        def scaled_out() -> bool:
            return counts(cloud) == ("InService", 2, 2)

        wait_for(scaled_out)
    finally:
        stop.set()
        worker.join()
    # The Updating status can be too brief to catch by polling; the scaling activity is the record.
    scale_out = [a for a in activities(cloud) if "desired instance count to 2" in a["Description"]]
    assert [a["StatusCode"] for a in scale_out] == ["Successful"], activities(cloud)
    assert len(instance_pids(cloud, "ep")) == 2
    assert failures == []

    wait_for(lambda: counts(cloud) == ("InService", 1, 1))
    assert len(instance_pids(cloud, "ep")) == 1

    scale_in, scale_out = activities(cloud, ResourceId=RESOURCE)  # newest first
    assert scale_out["Description"] == "Setting desired instance count to 2."
    assert "AlarmHigh" in scale_out["Cause"] and "per-instance" in scale_out["Cause"]
    assert scale_in["Description"] == "Setting desired instance count to 1."
    assert "AlarmLow" in scale_in["Cause"]
    for activity in (scale_in, scale_out):
        assert activity["StatusCode"] == "Successful"
        assert activity["StartTime"] <= activity["EndTime"]
        assert activity["ScalableDimension"] == DIMENSION
    assert scale_out["EndTime"] <= scale_in["StartTime"]


def test_load_below_target_does_not_scale(cloud: LocalCloud) -> None:
    register(cloud, target=10_000)
    for _ in range(20):
        invoke(cloud, "ep")
        time.sleep(0.05)
    time.sleep(1.0)
    assert counts(cloud) == ("InService", 1, 1)
    assert activities(cloud) == []


def test_minimum_capacity_is_applied_on_registration(cloud: LocalCloud) -> None:
    register(cloud, minimum=2, maximum=3, target=10_000)
    wait_for(lambda: counts(cloud) == ("InService", 2, 2))
    [activity] = activities(cloud)
    assert activity["Cause"] == "minimum capacity was set to 2"
    wait_for(lambda: activities(cloud)[0]["StatusCode"] == "Successful")
    time.sleep(1.0)  # no load, but never below the minimum
    assert counts(cloud) == ("InService", 2, 2)


def test_registering_an_unknown_variant_is_refused(cloud: LocalCloud) -> None:
    autoscaling = client(cloud, "application-autoscaling")
    with pytest.raises(ClientError) as caught:
        autoscaling.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId="endpoint/ep/variant/Nope",
            ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=2)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_activities_of_other_namespaces_are_empty(cloud: LocalCloud) -> None:
    assert activities(cloud) == []
    assert client(cloud, "application-autoscaling").describe_scaling_activities(
        ServiceNamespace="ecs")["ScalingActivities"] == []


def test_deregistering_removes_policies_and_unknown_targets_are_not_found(
        cloud: LocalCloud) -> None:
    register(cloud)
    autoscaling = client(cloud, "application-autoscaling")
    target = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
              "ScalableDimension": DIMENSION}
    autoscaling.deregister_scalable_target(**target)
    assert autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
        "ScalingPolicies"] == []
    with pytest.raises(autoscaling.exceptions.ObjectNotFoundException):
        autoscaling.deregister_scalable_target(**target)
    with pytest.raises(autoscaling.exceptions.ObjectNotFoundException):
        autoscaling.delete_scaling_policy(PolicyName="per-instance", **target)
