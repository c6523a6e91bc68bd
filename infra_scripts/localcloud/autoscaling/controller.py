"""Application Auto Scaling of SageMaker variants on the local cloud: target tracking that acts.

moto stores scalable targets and scaling policies. A controller thread evaluates each target
tracking policy on ``SageMakerVariantInvocationsPerInstance`` the way AWS's alarms do — the
invocations per instance per minute, measured over a window — and changes the variant's instance
count through the endpoints extension, i.e. starts or retires model-server processes. Each change
is a scaling activity answered by ``DescribeScalingActivities`` (moto lacks it).

Simplifications (documented, deliberate): scale-out is blocked during the scale-out cooldown
after a scale-out; scale-in is blocked during the scale-in cooldown after *any* scaling activity;
the desired count is ``ceil(invocations per minute / target)`` within [min, max].

Knobs, ``settings.options["autoscaling"]`` (AWS values by default):
  evaluation_period_s 60, metric_window_s 60, scale_out_evaluations 3, scale_in_evaluations 15,
  default_cooldown_s 300, scale_out_cooldown_s / scale_in_cooldown_s (override the policy's).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import (
    ApplicationAutoscalingBackend,
    FakeApplicationAutoscalingPolicy,
    FakeScalableTarget,
)
from moto.core.exceptions import JsonRESTError
from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, json_response, match_target
from infra_scripts.localcloud.sagemaker.endpoints import (
    EndpointBusy,
    Key,
    SageMakerEndpoints,
    VariantView,
)

OPTIONS = "autoscaling"
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
LOW_ALARM_FRACTION = 0.9  # AWS's scale-in alarm fires below 90 % of the target
MAX_RESULTS = 50


@dataclass
class Activity:
    resource_id: str
    desired: int
    cause: str
    region: str
    metric: float | None = None  # invocations per instance per minute when decided
    activity_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_time: datetime | None = None
    status_code: str = "InProgress"
    status_message: str = ""

    def finish(self, outcome: Future) -> None:
        error = outcome.exception()
        self.end_time = datetime.now(UTC)
        if error is None:
            self.status_code = "Successful"
            self.status_message = (f"Successfully set desired instance count to {self.desired}. "
                                   "Change successfully fulfilled by sagemaker.")
        else:
            self.status_code = "Failed"
            self.status_message = (f"Failed to set desired instance count to {self.desired}. "
                                   f"Reason: {error}")

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "ActivityId": self.activity_id, "ServiceNamespace": NAMESPACE,
            "ResourceId": self.resource_id, "ScalableDimension": DIMENSION,
            "Description": f"Setting desired instance count to {self.desired}.",
            "Cause": self.cause, "StartTime": self.start_time.timestamp(),
            "StatusCode": self.status_code, "StatusMessage": self.status_message,
        }
        if self.end_time is not None:
            item["EndTime"] = self.end_time.timestamp()
        return item


@dataclass
class Tracker:
    """Alarm state of one scalable target: consecutive breaching evaluations, cooldown clocks."""

    high: int = 0
    low: int = 0
    last_scale_out: float = -math.inf
    last_activity: float = -math.inf


@dataclass
class Reading:
    """One evaluation of a target, kept for timelines (benchmarks, debugging)."""

    at: float
    resource_id: str
    per_instance_per_minute: float
    current: int
    desired: int


class AutoscalingController:
    def __init__(self, cloud: LocalCloud, endpoints: SageMakerEndpoints) -> None:
        self.cloud = cloud
        self.endpoints = endpoints
        self.activities: list[Activity] = []
        self.readings: list[Reading] = []
        self._trackers: dict[tuple[Key, str], Tracker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoscaling", daemon=True)

    def option(self, name: str, default: Any) -> Any:
        return self.cloud.settings.option(OPTIONS, name, default)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(float(self.option("evaluation_period_s", 60.0))):
            try:
                self.evaluate()
            except Exception as error:  # keep the controller alive; AWS would retry too
                print(f"localcloud autoscaling: evaluation failed: {error!r}")

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> None:
        for region in sorted({key[1] for key in self.endpoints.keys()}):
            backend = self.cloud.backend("application-autoscaling", region)
            for target in backend.describe_scalable_targets(NAMESPACE, None, DIMENSION):
                self._evaluate_target(backend, region, target)

    def _evaluate_target(self, backend: ApplicationAutoscalingBackend, region: str,
                         target: FakeScalableTarget) -> None:
        parsed = parse_resource_id(target.resource_id)
        if parsed is None:
            return
        name, variant = parsed
        key = (self.cloud.account_id, region, name)
        view = self.endpoints.variant_view(key, variant)
        if view is None or view.busy or view.status != "InService":
            return  # AWS also waits for an endpoint that is updating
        low_bound = int(target.min_capacity or 0)
        high_bound = int(target.max_capacity or view.current)
        if view.current < low_bound or view.current > high_bound:
            bound = low_bound if view.current < low_bound else high_bound
            which = "minimum" if bound == low_bound else "maximum"
            self._scale(key, variant, target.resource_id, bound, f"{which} capacity was set to "
                        f"{bound}", None)
            return
        policies = tracking_policies(backend, target)
        if policies:
            self._track(key, variant, target, policies, view, (low_bound, high_bound))

    def _track(self, key: Key, variant: str, target: FakeScalableTarget,
               policies: list[FakeApplicationAutoscalingPolicy], view: VariantView,
               bounds: tuple[int, int]) -> None:
        now = time.monotonic()
        window = float(self.option("metric_window_s", 60.0))
        per_minute = self.endpoints.invocations_since(key, variant, now - window) * 60.0 / window
        per_instance = per_minute / max(1, view.current)
        configs = [p.target_tracking_scaling_policy_configuration or {} for p in policies]
        targets = [float(c["TargetValue"]) for c in configs]
        desired = min(bounds[1], max(bounds[0], max(math.ceil(per_minute / t) for t in targets)))
        self.readings.append(Reading(time.time(), target.resource_id, per_instance, view.current,
                                     desired))
        tracker = self._trackers.setdefault((key, variant), Tracker())
        high = any(per_instance > t for t in targets)
        low = all(per_instance < LOW_ALARM_FRACTION * t for t in targets)
        tracker.high = tracker.high + 1 if high else 0
        tracker.low = tracker.low + 1 if low else 0
        suspended = target.suspended_state or {}
        policy_names = ",".join(p.policy_name for p in policies)
        if (high and desired > view.current
                and tracker.high >= int(self.option("scale_out_evaluations", 3))
                and not suspended.get("DynamicScalingOutSuspended")
                and now - tracker.last_scale_out >= self._cooldown(configs, "ScaleOutCooldown")):
            cause = alarm_cause(target.resource_id, "AlarmHigh", policy_names)
            if self._scale(key, variant, target.resource_id, desired, cause, per_instance):
                tracker.last_scale_out = tracker.last_activity = now
                tracker.high = 0
        elif (low and desired < view.current
              and tracker.low >= int(self.option("scale_in_evaluations", 15))
              and not any(c.get("DisableScaleIn") for c in configs)
              and not suspended.get("DynamicScalingInSuspended")
              and now - tracker.last_activity >= self._cooldown(configs, "ScaleInCooldown")):
            cause = alarm_cause(target.resource_id, "AlarmLow", policy_names)
            if self._scale(key, variant, target.resource_id, desired, cause, per_instance):
                tracker.last_activity = now
                tracker.low = 0

    def _cooldown(self, configs: list[dict[str, Any]], name: str) -> float:
        override = self.option("scale_out_cooldown_s" if name == "ScaleOutCooldown"
                               else "scale_in_cooldown_s", None)
        if override is not None:
            return float(override)
        default = float(self.option("default_cooldown_s", 300.0))
        return max(float(c.get(name, default)) for c in configs)

    def _scale(self, key: Key, variant: str, resource_id: str, desired: int, cause: str,
               metric: float | None) -> bool:
        try:
            outcome = self.endpoints.scale(key, variant, desired)
        except EndpointBusy:
            return False  # tried again on the next evaluation
        activity = Activity(resource_id, desired, cause, key[1], metric)
        self.activities.append(activity)
        outcome.add_done_callback(activity.finish)
        return True

    # -- DescribeScalingActivities ---------------------------------------------------------
    def describe_activities(self, request: Request) -> Response:
        try:
            params = json.loads(request.get_data() or b"{}")
            namespace = params["ServiceNamespace"]
        except (ValueError, KeyError):
            return aws_error(400, "ValidationException",
                             "1 validation error detected: Value null at 'serviceNamespace' "
                             "failed to satisfy constraint: Member must not be null")
        region = request_region(request, self.cloud.region)
        found = [a for a in reversed(self.activities)  # newest first, as AWS lists them
                 if namespace == NAMESPACE and a.region == region
                 and params.get("ResourceId") in (None, a.resource_id)
                 and params.get("ScalableDimension") in (None, DIMENSION)]
        start = int(params.get("NextToken") or 0)
        end = start + min(int(params.get("MaxResults") or MAX_RESULTS), MAX_RESULTS)
        body: dict[str, Any] = {"ScalingActivities": [a.as_json() for a in found[start:end]]}
        if end < len(found):
            body["NextToken"] = str(end)
        return json_response(200, body)

    # -- RegisterScalableTarget validation -------------------------------------------------
    def check_target(self, backend: ApplicationAutoscalingBackend, namespace: str,
                     resource_id: str, dimension: str) -> None:
        """AWS refuses to register a variant that does not exist."""
        if namespace != NAMESPACE or dimension != DIMENSION:
            return
        parsed = parse_resource_id(resource_id)
        key = (backend.account_id, backend.region_name, parsed[0] if parsed else "")
        if parsed is None or self.endpoints.variant_view(key, parsed[1]) is None:
            raise AWSValidationException(
                f"The resource {resource_id} does not exist: no such SageMaker endpoint variant.")


def parse_resource_id(resource_id: str) -> tuple[str, str] | None:
    """``endpoint/<name>/variant/<variant>`` → (name, variant)."""
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
        return None
    return parts[1], parts[3]


def tracking_policies(backend: ApplicationAutoscalingBackend,
                      target: FakeScalableTarget) -> list[FakeApplicationAutoscalingPolicy]:
    """The target's target-tracking policies on invocations per instance (exact resource match)."""
    found = []
    for policy in list(backend.policies.values()):
        config = policy.target_tracking_scaling_policy_configuration or {}
        metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if (policy.service_namespace == NAMESPACE and policy.resource_id == target.resource_id
                and policy.scalable_dimension == target.scalable_dimension
                and policy.policy_type == "TargetTrackingScaling" and metric == METRIC
                and config.get("TargetValue")):
            found.append(policy)
    return found


def alarm_cause(resource_id: str, alarm: str, policy_names: str) -> str:
    return (f"monitor alarm TargetTracking-{resource_id}-{alarm}-{uuid.uuid4()} in state ALARM "
            f"triggered policy {policy_names}")


# Application Auto Scaling creates its service-linked role on the first RegisterScalableTarget
# (authorized as iam:CreateServiceLinkedRole for the caller: iam/calls.py).
LINKED_ROLES = {  # service namespace → (AWS service name, role name)
    "sagemaker": ("sagemaker.application-autoscaling.amazonaws.com",
                  "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"),
}


def ensure_linked_role(cloud: LocalCloud, namespace: str) -> None:
    from moto.iam.models import iam_backends

    if namespace not in LINKED_ROLES:
        return
    service, name = LINKED_ROLES[namespace]
    iam = iam_backends[cloud.account_id]["global"]
    if any(role.name == name for role in iam.roles.values()):
        return
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    iam.create_role(name, json.dumps(trust), f"/aws-service-role/{service}/",
                    permissions_boundary=None, description="", tags=[], max_session_duration="3600",
                    linked_service=service)


def install(cloud: LocalCloud) -> AutoscalingController:
    endpoints = cloud.extensions.get("sagemaker.endpoints")
    if not isinstance(endpoints, SageMakerEndpoints):
        raise RuntimeError("autoscaling needs the sagemaker_endpoints extension installed first")
    controller = AutoscalingController(cloud, endpoints)

    def register_scalable_target(backend: ApplicationAutoscalingBackend, namespace: str,
                                 r_id: str, dimension: str, *args: Any, **kwargs: Any) -> Any:
        controller.check_target(backend, namespace, r_id, dimension)
        target = original(backend, namespace, r_id, dimension, *args, **kwargs)
        ensure_linked_role(cloud, namespace)
        return target

    def deregister_scalable_target(backend: ApplicationAutoscalingBackend, namespace: str,
                                   r_id: str, dimension: str) -> None:
        if not backend.describe_scalable_targets(namespace, [r_id], dimension):
            raise JsonRESTError("ObjectNotFoundException", (
                f"No scalable target registered for service namespace: {namespace}, resource ID: "
                f"{r_id}, scalable dimension: {dimension}"))
        original_deregister(backend, namespace, r_id, dimension)
        for key, policy in list(backend.policies.items()):  # AWS deletes the target's policies
            if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == (
                    namespace, r_id, dimension):
                del backend.policies[key]

    def delete_scaling_policy(backend: ApplicationAutoscalingBackend, policy_name: str,
                              service_namespace: str, resource_id: str,
                              scalable_dimension: str) -> None:
        key = FakeApplicationAutoscalingPolicy.formulate_key(
            service_namespace, resource_id, scalable_dimension, policy_name)
        if key not in backend.policies:
            raise JsonRESTError("ObjectNotFoundException", (
                f"No scaling policy found for service namespace: {service_namespace}, resource "
                f"ID: {resource_id}, scalable dimension: {scalable_dimension}, policy name: "
                f"{policy_name}"))
        original_delete_policy(backend, policy_name, service_namespace, resource_id,
                               scalable_dimension)

    original = cloud.patch(ApplicationAutoscalingBackend, "register_scalable_target",
                           register_scalable_target)
    # moto answers ValidationException where AWS answers ObjectNotFoundException.
    original_deregister = cloud.patch(ApplicationAutoscalingBackend,
                                      "deregister_scalable_target", deregister_scalable_target)
    original_delete_policy = cloud.patch(ApplicationAutoscalingBackend, "delete_scaling_policy",
                                         delete_scaling_policy)
    cloud.add_route(match_target("AnyScaleFrontendService.DescribeScalingActivities"),
                    controller.describe_activities)
    controller.start()
    cloud.on_stop(controller.stop)
    return controller
