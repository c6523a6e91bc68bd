"""UpdateEndpoint with a DeploymentConfig on the local cloud: canary traffic, baking under
CloudWatch alarms computed from the endpoint's own metrics, automatic rollback.

AWS documents the behaviour in deployment-guardrails-blue-green.html (traffic shifting, baking),
deployment-guardrails-blue-green-canary.html (canary ≤ 50 % of the new fleet),
deployment-guardrails-configuration.html (alarms, rollback) and API_BlueGreenUpdatePolicy.html
(the timeouts' ranges); endpoint-scaling-update.html says an autoscaled variant may change its
model but not its instance type.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from handlers import predict
from handlers.rollout import deployment_config, put_alarms
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from tests.localcloud.test_sagemaker_endpoints import (
    ENDPOINTS,
    client,
    create_config,
    instance_pids,
    pid_alive,
    standin_options,
    wait_until_settled,
    write_standin,
)

SCALING = "infra_scripts.localcloud.autoscaling.controller"
ROLLOUT = {"canary_percent": 25, "wait_seconds": 4, "termination_wait_seconds": 0,
           "alarm_period_seconds": 10, "max_errors": 1, "max_latency_ms": 2000}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    options = standin_options(write_standin(tmp_path), alarm_check_interval_s=0.2)
    with LocalCloud(settings=LocalCloudSettings(options={"sagemaker_endpoints": options}),
                    extensions=[ENDPOINTS, SCALING]) as running:
        yield running


def serve(cloud: LocalCloud, old: dict, new: dict) -> None:
    """ep serving v1, and v2's config ready."""
    create_config(cloud, "v1", old)
    create_config(cloud, "v2", new)
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")


def start(cloud: LocalCloud, settings: dict = ROLLOUT) -> dict:
    """A guarded update of ep to v2 (not awaited); its DeploymentConfig."""
    sagemaker = client(cloud, "sagemaker")
    alarms = put_alarms(client(cloud, "cloudwatch"), "ep", "AllTraffic", "v2", settings)
    config = deployment_config(settings, alarms)
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2", DeploymentConfig=config)
    return config


class Caller:
    """One client calling through the predict function's invoke (its retry included)."""

    def __init__(self, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(predict, "runtime_client", lambda: client(cloud, "sagemaker-runtime"))
        self.answers: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.answers.append(predict.invoke("ep", "{}"))

    def __enter__(self) -> Caller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def failed(self) -> list[dict]:
        return [a for a in self.answers if a["statusCode"] != 200]

    def versions(self) -> list[str]:
        return [json.loads(a["body"])["version"] for a in self.answers if a["statusCode"] == 200]


def test_a_failing_model_is_rolled_back_while_the_client_sees_no_failure(
        cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(cloud, {"version": "v1"}, {"version": "v2", "fail_requests": 500})
    old_pids = instance_pids(cloud, "ep")
    with Caller(cloud, monkeypatch) as caller:
        time.sleep(0.3)
        start(cloud)
        described = wait_until_settled(cloud, "ep", timeout_s=60)
        time.sleep(0.5)
    assert caller.failed() == []  # every canary failure was retried onto the old fleet
    assert set(caller.versions()) == {"v1"}
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "v1"
    assert "ep-rollout-5xx" in described["FailureReason"] and "Rolled back" in described["FailureReason"]
    alarms = client(cloud, "cloudwatch").describe_alarms(AlarmNames=["ep-rollout-5xx"])["MetricAlarms"]
    assert alarms[0]["StateValue"] == "ALARM"
    assert instance_pids(cloud, "ep") == old_pids  # blue served throughout; green is gone
    endpoints = cloud.extensions["sagemaker.endpoints"]
    assert endpoints._states[(cloud.account_id, cloud.region, "ep")].canary is None


def test_a_healthy_canary_takes_its_share_then_everything(cloud: LocalCloud,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    serve(cloud, {"version": "v1"}, {"version": "v2"})
    with Caller(cloud, monkeypatch) as caller:
        start(cloud)
        during = wait_for_canary(cloud)
        mark = len(caller.answers)
        time.sleep(1.0)
        canary = caller.versions()[mark:]
        assert during and canary
        share = canary.count("v2") / len(canary)
        assert 0.2 <= share <= 0.3, share  # CAPACITY_PERCENT 25, deterministic split
        described = wait_until_settled(cloud, "ep", timeout_s=60)
        time.sleep(0.3)
    assert described["EndpointConfigName"] == "v2" and not described.get("FailureReason")
    assert caller.versions()[-1] == "v2" and caller.failed() == []


def wait_for_canary(cloud: LocalCloud, timeout_s: float = 30) -> bool:
    endpoints = cloud.extensions["sagemaker.endpoints"]
    key = (cloud.account_id, cloud.region, "ep")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = endpoints._states.get(key)
        if state is not None and state.canary is not None:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("change, message", [
    ({"canary_percent": 60}, "at most 50%"),
    ({"wait_seconds": 4000}, "WaitIntervalInSeconds"),
])
def test_deployment_configs_aws_refuses_are_refused(cloud: LocalCloud, change: dict, message: str) -> None:
    serve(cloud, {"version": "v1"}, {"version": "v2"})
    with pytest.raises(ClientError, match=message) as raised:
        start(cloud, {**ROLLOUT, **change})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert wait_until_settled(cloud, "ep")["EndpointConfigName"] == "v1"


def test_linear_shifting_is_refused_not_run_as_something_else(cloud: LocalCloud) -> None:
    create_config(cloud, "v1", {"version": "v1"})
    create_config(cloud, "v2", {"version": "v2"})
    sagemaker = client(cloud, "sagemaker")
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    config = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
        "Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
        "WaitIntervalInSeconds": 1}}}
    with pytest.raises(ClientError, match="LINEAR"):
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2", DeploymentConfig=config)


def test_an_autoscaled_variant_may_change_its_model_not_its_instance_type(cloud: LocalCloud) -> None:
    create_config(cloud, "v1", {"version": "v1"})
    sagemaker = client(cloud, "sagemaker")
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    client(cloud, "application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="endpoint/ep/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1, MaxCapacity=2)
    create_config(cloud, "v2", {"version": "v2"})
    sagemaker.create_endpoint_config(EndpointConfigName="v3", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "v2", "InitialInstanceCount": 1,
        "InstanceType": "ml.c5.xlarge"}])
    with pytest.raises(ClientError, match="deregister it before changing its instance type"):
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v3")
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2")
    assert wait_until_settled(cloud, "ep")["EndpointConfigName"] == "v2"


def test_the_alarm_trips_before_the_old_fleet_is_back_alone(cloud: LocalCloud,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The order the benchmark's figure relies on (its duration lives in bench_rollback)."""
    serve(cloud, {"version": "v1"}, {"version": "v2", "fail_requests": 500})
    with Caller(cloud, monkeypatch):
        start(cloud)
        described = wait_until_settled(cloud, "ep", timeout_s=60)
    alarm = client(cloud, "cloudwatch").describe_alarms(AlarmNames=["ep-rollout-5xx"])["MetricAlarms"][0]
    assert described["EndpointConfigName"] == "v1"
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateUpdatedTimestamp"] <= described["LastModifiedTime"]
    assert all(pid_alive(pid) for pid in instance_pids(cloud, "ep"))
