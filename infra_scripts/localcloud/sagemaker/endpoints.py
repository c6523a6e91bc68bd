"""SageMaker endpoints on the local cloud: real model-server processes behind the same APIs.

moto keeps the records (models, endpoint configs, endpoints); this module wraps its backend so
that ``CreateEndpoint`` starts one model-server process per instance (Creating → InService, or
Failed with a reason), ``DeleteEndpoint`` stops them and ``UpdateEndpointWeightsAndCapacities``
really changes the instance count. It answers ``UpdateEndpoint`` (blue/green, with a
DeploymentConfig's canary, baking and alarm rollback: ``rollout.py``; moto lacks it)
and sagemaker-runtime ``InvokeEndpoint`` (round robin over InService instances; 4xx/5xx from
the model surface as ``ModelError`` like AWS) before moto does. Invocations are counted per
variant for the autoscaling controller and published to CloudWatch ``AWS/SageMaker``.

Each instance is the PyTorch inference container (``instances.py``), fed only the model's
``model.tar.gz`` and its container ``Environment``.

Knobs, ``settings.options["sagemaker_endpoints"]``: server_command (tests of the fleet mechanics
only: a stand-in server's argv template with {python} {model} {port} {host}), startup_timeout_s
(300; a variant's ContainerStartupHealthCheckTimeoutInSeconds wins), invocation_timeout_s
(60, as AWS), drain_timeout_s (= invocation timeout), stop_grace_s (5), health_check_interval_s
(2; dead instances are replaced), publish_metrics (True), alarm_check_interval_s (0.5: how often a
guarded rollout evaluates its rollback alarms).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import urllib3
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import AWSValidationException, ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, SageMakerModelBackend
from werkzeug.wrappers import Request, Response

from handlers.naming import VARIANT_DIMENSION, scaling_resource_id
from infra_scripts.localcloud.cloudwatch import alarms as cloudwatch_alarms
from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.server import (
    LocalCloud,
    aws_error,
    json_response,
    match_path,
    match_target,
)
from infra_scripts.localcloud.sagemaker import rollout
from infra_scripts.localcloud.sagemaker.containers import CONTAINER_ENV
from infra_scripts.localcloud.sagemaker.instances import (
    ArtifactStore,
    Fleet,
    InstanceFailed,
    LaunchSpec,
    ModelInstance,
    Reply,
)

OPTIONS = "sagemaker_endpoints"
INVOKE_PATH = r"/endpoints/(?P<name>[^/]+)/invocations"
SERVING_STATUSES = ("InService", "Updating", "SystemUpdating", "RollingBack")
FORWARDED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes",
                     "X-Amzn-SageMaker-Inference-Id")
METRICS_RETENTION_S = 900.0
Key = tuple[str, str, str]  # account, region, endpoint name


class EndpointBusy(Exception):
    """Another operation (create, update, scaling) is in progress on the endpoint."""


@dataclass
class EndpointState:
    key: Key
    backend: SageMakerModelBackend
    record: FakeEndpoint
    fleets: dict[str, Fleet] = field(default_factory=dict)  # the variants taking traffic
    weights: dict[str, float] = field(default_factory=dict)
    pending: list[Fleet] = field(default_factory=list)  # being launched, not yet routed
    canary: rollout.Canary | None = None  # green's share of a variant while it bakes
    operation: threading.Lock = field(default_factory=threading.Lock)
    deleted: threading.Event = field(default_factory=threading.Event)

    def variant_row(self, variant: str) -> dict[str, Any] | None:
        return next((row for row in self.record.production_variants
                     if row["VariantName"] == variant), None)

    def set_status(self, status: str, reason: str | None = None) -> None:
        self.record.endpoint_status = status
        self.record.failure_reason = reason
        self.record.last_modified_time = utcnow()


@dataclass
class VariantView:
    """What the autoscaling controller needs to know about one variant."""

    status: str
    busy: bool
    desired: int
    current: int


class SageMakerEndpoints:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.root = cloud.work_dir / "sagemaker"
        self.artifacts = ArtifactStore(self.root / "models", lambda: cloud.boto3_client("s3"))
        self._states: dict[Key, EndpointState] = {}
        self._invocations: dict[tuple[Key, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def option(self, name: str, default: Any) -> Any:
        return self.cloud.settings.option(OPTIONS, name, default)

    # -- moto backend wrappers -----------------------------------------------------------------
    def create(self, original: Callable, backend: SageMakerModelBackend, endpoint_name: str,
               endpoint_config_name: str, tags: Any) -> FakeEndpoint:
        if endpoint_name in backend.endpoints:
            arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
            raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
        record = original(backend, endpoint_name, endpoint_config_name, tags)
        state = EndpointState((backend.account_id, backend.region_name, endpoint_name),
                              backend, record)
        state.operation.acquire()
        state.set_status("Creating")
        for row in record.production_variants:
            row["CurrentInstanceCount"] = 0
        with self._lock:
            self._states[state.key] = state
        self._spawn(f"create-{endpoint_name}", self._bring_up, state, endpoint_config_name)
        return record

    def delete(self, original: Callable, backend: SageMakerModelBackend,
               endpoint_name: str) -> None:
        original(backend, endpoint_name)  # raises moto's ValidationException if unknown
        with self._lock:
            state = self._states.pop((backend.account_id, backend.region_name, endpoint_name),
                                     None)
        if state is not None:
            self._stop_state(state)

    def update_weights_and_capacities(self, backend: SageMakerModelBackend, endpoint_name: str,
                                      desired: list[dict[str, Any]]) -> str:
        state = self._states.get((backend.account_id, backend.region_name, endpoint_name))
        if state is None:
            arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id,
                                             backend.region_name)
            raise AWSValidationException(f'Could not find endpoint "{arn}".')
        for item in desired:
            if state.variant_row(item.get("VariantName", "")) is None:
                raise AWSValidationException(
                    f'The variant name(s) "{item.get("VariantName")}" is/are not present within '
                    f'endpoint configuration "{state.record.endpoint_config_name}".')
        for item in desired:
            self._apply_weight_and_capacity(state, item)
        return state.record.arn

    def _apply_weight_and_capacity(self, state: EndpointState, item: dict[str, Any]) -> None:
        variant = item["VariantName"]
        if item.get("DesiredWeight") is not None:
            weight = float(item["DesiredWeight"])
            state.weights[variant] = weight
            row = state.variant_row(variant) or {}
            row["CurrentWeight"] = row["DesiredWeight"] = weight
        if item.get("DesiredInstanceCount") is not None:
            try:
                self.scale(state.key, variant, int(item["DesiredInstanceCount"]))
            except EndpointBusy as error:
                raise AWSValidationException(str(error)) from error

    # -- create / update / delete ------------------------------------------------------------
    def _bring_up(self, state: EndpointState, config_name: str) -> None:
        try:
            state.fleets = self._launch_config(state, config_name, retained={})
            if state.deleted.is_set():  # deleted while the last instance came up
                self._stop_state(state)
                return
            self._publish_variants(state, config_name)
            state.set_status("InService")
        except Exception as error:  # anything (a model deleted meanwhile, a bad command) fails it
            if not state.deleted.is_set():
                state.set_status("Failed", failure_reason(error))
        finally:
            state.operation.release()

    def start_update(self, state: EndpointState, config_name: str, retain: bool,
                     plan: rollout.RolloutPlan | None = None) -> None:
        if not state.operation.acquire(blocking=False):
            raise EndpointBusy(f'Cannot update in-progress endpoint "{state.record.arn}".')
        status = state.record.endpoint_status
        if status != "InService":
            state.operation.release()
            raise EndpointBusy(f'Cannot update endpoint "{state.record.arn}" in status {status}.')
        state.set_status("Updating")
        state.record.pending_deployment_summary = {
            "EndpointConfigName": config_name, "StartTime": utcnow()}
        retained = ({row["VariantName"]: int(row.get("DesiredInstanceCount") or 1)
                     for row in state.record.production_variants} if retain else {})
        if plan is None:
            self._spawn(f"update-{state.key[2]}", self._blue_green, state, config_name, retained)
        else:
            self._spawn(f"update-{state.key[2]}", self._guarded, state, config_name, retained, plan)

    def _blue_green(self, state: EndpointState, config_name: str,
                    retained: dict[str, int]) -> None:
        """Bring the new config's fleets up, switch traffic, then drain and stop the old ones."""
        try:
            try:
                fleets = self._launch_config(state, config_name, retained)
            except Exception as error:
                state.record.pending_deployment_summary = None
                if not state.deleted.is_set():  # the old fleet never stopped serving
                    state.set_status("InService", f"Update to {config_name} failed: "
                                                  f"{failure_reason(error)}")
                return
            old, state.fleets = state.fleets, fleets  # one reference swap: traffic moves here
            if state.deleted.is_set():
                self._stop_state(state)
                return
            self._publish_variants(state, config_name)
            state.record.pending_deployment_summary = None
            for fleet in old.values():
                fleet.retire_all(self._drain_timeout())
            if not state.deleted.is_set():
                state.set_status("InService")
        finally:
            state.operation.release()

    # -- guarded rollout (DeploymentConfig) ----------------------------------------------------
    def _guarded(self, state: EndpointState, config_name: str, retained: dict[str, int],
                 plan: rollout.RolloutPlan) -> None:
        """Canary (or all at once), bake under the alarms, shift, wait, retire blue; or roll back."""
        deadline = time.monotonic() + plan.max_s
        old_config = state.record.endpoint_config_name
        try:
            try:
                fleets = self._launch_config(state, config_name, retained)
            except Exception as error:
                state.record.pending_deployment_summary = None
                if not state.deleted.is_set():
                    state.set_status("InService", f"Update to {config_name} failed: "
                                                  f"{failure_reason(error)}")
                return
            variant, green = next(iter(fleets.items()))
            if plan.mode == "CANARY":
                state.canary = rollout.Canary(variant, green, config_name,
                                              plan.canary_share(len(green.in_service())))
                tripped = self._bake(state, plan, plan.wait_s, deadline)
                if tripped:
                    self._roll_back(state, fleets, None, old_config, tripped)
                    return
            old, state.fleets = state.fleets, fleets  # every request to green from here
            state.canary = None
            self._publish_variants(state, config_name)
            final_bake = (plan.wait_s if plan.mode == "ALL_AT_ONCE" else 0.0) + plan.termination_wait_s
            tripped = self._bake(state, plan, final_bake, deadline)
            if tripped:
                self._roll_back(state, fleets, old, old_config, tripped)
                return
            state.record.pending_deployment_summary = None
            for fleet in old.values():
                fleet.retire_all(self._drain_timeout())
            if not state.deleted.is_set():
                state.set_status("InService")
        finally:
            state.canary = None
            state.operation.release()

    def _bake(self, state: EndpointState, plan: rollout.RolloutPlan, seconds: float,
              deadline: float) -> str | None:
        """Watch the rollback alarms for ``seconds``; the reason to roll back, or None."""
        interval = float(self.option("alarm_check_interval_s", 0.5))
        until = time.monotonic() + seconds
        backend = self.cloud.backend("cloudwatch", state.key[1])
        while not state.deleted.is_set():
            tripped = [e for e in cloudwatch_alarms.evaluate(backend, plan.alarms) if e.state == "ALARM"]
            if tripped:
                return ("Rolled back: CloudWatch alarm(s) " + ", ".join(e.name for e in tripped)
                        + " went into ALARM during the deployment (" + tripped[0].reason + ").")
            if time.monotonic() > deadline:
                return "Rolled back: the deployment exceeded MaximumExecutionTimeoutInSeconds."
            if time.monotonic() >= until:
                return None
            time.sleep(min(interval, max(0.0, until - time.monotonic())) or interval)
        return None

    def _roll_back(self, state: EndpointState, green: dict[str, Fleet], blue: dict[str, Fleet] | None,
                   old_config: str, reason: str) -> None:
        """All traffic back to blue in one step, then green goes."""
        state.set_status("RollingBack", reason)
        state.canary = None
        if blue is not None:
            state.fleets = blue
            self._publish_variants(state, old_config)
        state.record.pending_deployment_summary = None
        for fleet in green.values():
            fleet.stop_now()
        if not state.deleted.is_set():
            state.set_status("InService", reason)

    def _launch_config(self, state: EndpointState, config_name: str,
                       retained: dict[str, int]) -> dict[str, Fleet]:
        config = state.backend.describe_endpoint_config(config_name)
        fleets: dict[str, Fleet] = {}
        try:
            for variant in config["ProductionVariants"]:
                name = variant["VariantName"]
                fleet = Fleet(name, self._launch_spec(state, variant))
                fleets[name] = fleet
                state.pending.append(fleet)
                if state.deleted.is_set():
                    raise InstanceFailed("endpoint deleted")
                fleet.launch(retained.get(name) or int(variant.get("InitialInstanceCount") or 1))
        except BaseException:
            for fleet in fleets.values():
                fleet.stop_now()
            raise
        finally:
            state.pending = [f for f in state.pending if f not in fleets.values()]
        state.weights = {v["VariantName"]: float(v.get("InitialVariantWeight", 1.0))
                         for v in config["ProductionVariants"]}
        return fleets

    def _launch_spec(self, state: EndpointState, variant: dict[str, Any]) -> LaunchSpec:
        container = self._container(state.backend, variant["ModelName"])
        # SageMaker hosting fetches the model data and runs each instance as the model's
        # ExecutionRoleArn.
        model = state.backend.describe_model(variant["ModelName"])
        session = f"SageMaker-{state.key[2]}"
        model_source = self.artifacts.stage(container, self.cloud.role_client(
            model.execution_role_arn, "s3", session))
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        environment.update(self.cloud.role_env(model.execution_role_arn, session))
        startup = variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
        command = self.option("server_command", None)
        return LaunchSpec(
            model_source=model_source,
            env=self.cloud.child_env({**CONTAINER_ENV, **environment}),
            log_dir=self.root / "endpoints" / state.key[2] / variant["VariantName"],
            command=tuple(command) if command else None,
            variant=variant["VariantName"],
            startup_timeout_s=float(startup or self.option("startup_timeout_s", 300.0)),
            invocation_timeout_s=float(self.option("invocation_timeout_s", 60.0)),
            stop_grace_s=float(self.option("stop_grace_s", 5.0)),
        )

    @staticmethod
    def _container(backend: SageMakerModelBackend, model_name: str) -> dict[str, Any]:
        model = backend.describe_model(model_name)
        container = model.primary_container or (model.containers or [{}])[0]
        return dict(container or {})

    def _publish_variants(self, state: EndpointState, config_name: str) -> None:
        """Make DescribeEndpoint show the variants that now take traffic."""
        rows = []
        for name, fleet in state.fleets.items():
            count = len(fleet.in_service())
            weight = state.weights.get(name, 1.0)
            image = self._container(state.backend, self._model_of(state, config_name, name))
            rows.append({
                "VariantName": name,
                "DeployedImages": [{"SpecifiedImage": image.get("Image", "local"),
                                    "ResolvedImage": image.get("Image", "local"),
                                    "ResolutionTime": utcnow()}],
                "CurrentWeight": weight, "DesiredWeight": weight,
                "CurrentInstanceCount": count, "DesiredInstanceCount": count,
            })
        state.record.production_variants = rows
        state.record.endpoint_config_name = config_name

    @staticmethod
    def _model_of(state: EndpointState, config_name: str, variant: str) -> str:
        config = state.backend.describe_endpoint_config(config_name)
        return next(v["ModelName"] for v in config["ProductionVariants"]
                    if v["VariantName"] == variant)

    def _stop_state(self, state: EndpointState) -> None:
        state.deleted.set()
        for fleet in [*state.fleets.values(), *state.pending]:
            fleet.stop_now()

    def _drain_timeout(self) -> float:
        return float(self.option("drain_timeout_s", self.option("invocation_timeout_s", 60.0)))

    # -- scaling (autoscaling and UpdateEndpointWeightsAndCapacities) ------------------------
    def scale(self, key: Key, variant: str, desired: int) -> Future:
        """Change a variant's instance count; the future resolves when it is reached."""
        state = self._states.get(key)
        if state is None or state.variant_row(variant) is None:
            raise EndpointBusy(f"endpoint {key[2]} variant {variant} not found")
        if not state.operation.acquire(blocking=False):
            raise EndpointBusy(f'Cannot update in-progress endpoint "{state.record.arn}".')
        if state.record.endpoint_status != "InService":
            state.operation.release()
            raise EndpointBusy(f'Endpoint "{state.record.arn}" is not InService.')
        row = state.variant_row(variant) or {}
        row["DesiredInstanceCount"] = desired
        state.set_status("Updating")
        done: Future = Future()
        self._spawn(f"scale-{key[2]}", self._rescale, state, variant, desired, done)
        return done

    def _rescale(self, state: EndpointState, variant: str, desired: int, done: Future) -> None:
        fleet = state.fleets[variant]
        row = state.variant_row(variant) or {}
        try:
            current = len(fleet.in_service())
            if desired > current:
                fleet.launch(desired - current)
            elif desired < current:
                fleet.retire(current - desired, self._drain_timeout())
            done.set_result(len(fleet.in_service()))
        except Exception as error:
            done.set_exception(error)
        finally:
            row["CurrentInstanceCount"] = row["DesiredInstanceCount"] = len(fleet.in_service())
            if not state.deleted.is_set():
                state.set_status("InService")
            state.operation.release()

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._states)

    def variant_view(self, key: Key, variant: str) -> VariantView | None:
        state = self._states.get(key)
        row = state.variant_row(variant) if state else None
        if state is None or row is None:
            return None
        return VariantView(status=state.record.endpoint_status, busy=state.operation.locked(),
                           desired=int(row.get("DesiredInstanceCount") or 0),
                           current=int(row.get("CurrentInstanceCount") or 0))

    def invocations_since(self, key: Key, variant: str, since: float) -> int:
        """Invocations of a variant after ``since`` (time.monotonic())."""
        with self._lock:  # a deque must not change while it is iterated
            return sum(1 for stamp in self._invocations.get((key, variant), ()) if stamp > since)

    def instances(self, key: Key, variant: str) -> list[ModelInstance]:
        state = self._states.get(key)
        fleet = state.fleets.get(variant) if state else None
        return fleet.in_service() if fleet else []

    # -- health: replace instances whose process died ----------------------------------------
    def _supervise(self) -> None:
        interval = float(self.option("health_check_interval_s", 2.0))
        while not self._stopping.wait(interval):
            for state in list(self._states.values()):
                if state.operation.acquire(blocking=False):
                    try:
                        self._replace_dead(state)
                    finally:
                        state.operation.release()

    def _replace_dead(self, state: EndpointState) -> None:
        for fleet in list(state.fleets.values()):
            unhealthy = fleet.unhealthy_instances()
            if not unhealthy:
                continue
            fleet.retire(len(unhealthy), drain_timeout_s=0)
            try:
                fleet.launch(len(unhealthy))
            except InstanceFailed:
                pass  # tried again on the next round
            row = state.variant_row(fleet.variant) or {}
            row["CurrentInstanceCount"] = len(fleet.in_service())

    # -- InvokeEndpoint ----------------------------------------------------------------------
    def handle_invoke(self, request: Request) -> Response:
        name = re.fullmatch(INVOKE_PATH, request.path).group("name")
        key = (self.cloud.account_id, request_region(request, self.cloud.region), name)
        state = self._states.get(key)
        if state is None or state.record.endpoint_status not in SERVING_STATUSES:
            return _runtime_error(400, "ValidationError",
                                  f"Endpoint {name} of account {key[0]} not found.")
        fleet = self._choose_fleet(state, request.headers.get("X-Amzn-SageMaker-Target-Variant"))
        canary = state.canary
        if fleet is not None and canary is not None and canary.variant == fleet.variant \
                and canary.takes_next():
            fleet = canary.fleet
        if fleet is None:
            return _runtime_error(400, "ValidationError",
                                  "The variant specified in TargetVariant is not valid for "
                                  f"endpoint {name}.")
        return self._forward(state, fleet, request)

    @staticmethod
    def _choose_fleet(state: EndpointState, target: str | None) -> Fleet | None:
        """The target variant, else one drawn by weight (a blue/green swap may happen anytime)."""
        fleets = state.fleets
        if target:
            return fleets.get(target)
        names = list(fleets)
        weights = [state.weights.get(n, 1.0) for n in names]
        if len(names) <= 1 or not any(weights):
            return fleets[names[0]] if names else None
        return fleets[random.choices(names, weights=weights)[0]]

    def _forward(self, state: EndpointState, fleet: Fleet, request: Request) -> Response:
        variant = fleet.variant
        body = request.get_data()
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        for _attempt in range(max(1, len(fleet.instances))):
            instance = fleet.acquire()
            if instance is None:
                break
            started = time.perf_counter()
            try:
                reply = instance.invoke(body, headers)
            except urllib3.exceptions.ReadTimeoutError:
                reply = None
            except urllib3.exceptions.HTTPError:
                fleet.mark_unhealthy(instance)  # the supervisor replaces it; try the next one
                continue
            finally:
                fleet.release(instance)
            canary = state.canary
            config = canary.config_name if canary is not None and canary.fleet is fleet \
                else state.record.endpoint_config_name
            self._record(state, variant, config, len(fleet.in_service()),
                         time.perf_counter() - started, reply)
            return self._answer(state, variant, instance, reply)
        return _runtime_error(503, "ServiceUnavailable",
                              f"No instance of variant {variant} is available; try again.")

    def _answer(self, state: EndpointState, variant: str, instance: ModelInstance,
                reply: Reply | None) -> Response:
        if reply is not None and 200 <= reply.status < 300:
            headers = {"x-Amzn-Invoked-Production-Variant": variant}
            attributes = _header(reply.headers, "X-Amzn-SageMaker-Custom-Attributes")
            if attributes:
                headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
            return Response(reply.body, status=200, headers=headers,
                            content_type=_header(reply.headers, "Content-Type")
                            or "application/octet-stream")
        return self._model_error(state, instance, reply)

    def _model_error(self, state: EndpointState, instance: ModelInstance,
                     reply: Reply | None) -> Response:
        account, region, name = state.key
        if reply is None:
            status, original = 0, ("Your invocation timed out while waiting for a response "
                                   "from container primary.")
        else:
            status, original = reply.status, reply.body.decode("utf-8", "replace")[:8192]
        kind = "client" if 400 <= status < 500 else "server"
        message = (f'Received {kind} error ({status}) from primary with message "{original}". '
                   f"See {instance.stderr_path} in account {account} for more information.")
        body = {
            "__type": "ModelError", "message": message, "Message": message,
            "OriginalStatusCode": status, "OriginalMessage": original,
            "LogStreamArn": (f"arn:aws:logs:{region}:{account}:log-group:"
                             f"/aws/sagemaker/Endpoints/{name}:log-stream:"
                             f"{instance.spec.log_dir.name}/{instance.id}"),
        }
        return json_response(424, body, {"x-amzn-ErrorType": "ModelError"})

    # -- metrics -------------------------------------------------------------------------------
    def _record(self, state: EndpointState, variant: str, config: str, instance_count: int,
                latency_s: float, reply: Reply | None) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._invocations.setdefault((state.key, variant), deque())
            times.append(now)
            while times and times[0] < now - METRICS_RETENTION_S:
                times.popleft()
        if self.option("publish_metrics", True):
            self._put_metrics(state, variant, config, instance_count, latency_s, reply)

    def _put_metrics(self, state: EndpointState, variant: str, config: str, instance_count: int,
                     latency_s: float, reply: Reply | None) -> None:
        """AWS/SageMaker per variant, and per variant and endpoint config: the fleet a blue/green
        update's alarms watch (the guardrails' "new fleet" alarms name the EndpointConfigName)."""
        status = reply.status if reply is not None else 500
        variant_dimensions = [{"Name": "EndpointName", "Value": state.key[2]},
                              {"Name": "VariantName", "Value": variant}]
        fleet_dimensions = [*variant_dimensions, {"Name": "EndpointConfigName", "Value": config}]
        data = [
            ("Invocations", 1.0, "None"),
            ("InvocationsPerInstance", 1.0 / max(1, instance_count), "None"),
            ("ModelLatency", latency_s * 1e6, "Microseconds"),
            ("Invocation4XXErrors", float(400 <= status < 500), "None"),
            ("Invocation5XXErrors", float(status >= 500), "None"),
            ("InvocationModelErrors", float(not 200 <= status < 300), "None"),
        ]
        metric_data = [{"MetricName": metric, "Value": value, "Unit": unit, "Dimensions": dimensions}
                       for dimensions in (variant_dimensions, fleet_dimensions)
                       for metric, value, unit in data]
        try:
            self.cloud.backend("cloudwatch", state.key[1]).put_metric_data(
                "AWS/SageMaker", metric_data)
        except Exception:  # metrics are best effort; never fail an invocation over them
            pass

    # -- lifecycle -----------------------------------------------------------------------------
    def _spawn(self, name: str, target: Callable, *args: Any) -> None:
        threading.Thread(target=target, args=args, name=f"sagemaker-{name}", daemon=True).start()

    def shutdown(self) -> None:
        self._stopping.set()
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        stoppers = [threading.Thread(target=self._stop_state, args=(state,)) for state in states]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()


# -- request helpers ----------------------------------------------------------------------------

def failure_reason(error: Exception) -> str:
    """The text for FailureReason: moto's errors carry it in .message."""
    return str(getattr(error, "message", "") or error)


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _runtime_error(status: int, code: str, message: str) -> Response:
    return aws_error(status, code, message, protocol="rest-json")


def _is_runtime_invoke(request: Request) -> bool:
    """sagemaker-runtime InvokeEndpoint (not a same-path call of another service)."""
    if not match_path("POST", INVOKE_PATH)(request):
        return False
    auth = request.headers.get("Authorization", "")
    return request.host.startswith("runtime.sagemaker") or "/sagemaker/aws4_request" in auth \
        or not auth


def _handle_update(endpoints: SageMakerEndpoints, request: Request) -> Response:
    try:
        params = json.loads(request.get_data() or b"{}")
        name, config_name = params["EndpointName"], params["EndpointConfigName"]
    except (ValueError, KeyError) as error:
        return aws_error(400, "ValidationException", f"Invalid UpdateEndpoint request: {error}")
    backend: SageMakerModelBackend = endpoints.cloud.backend(
        "sagemaker", request_region(request, endpoints.cloud.region))
    state = endpoints._states.get((backend.account_id, backend.region_name, name))
    if state is None:
        arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
        return aws_error(400, "ValidationException", f'Could not find endpoint "{arn}".')
    if config_name not in backend.endpoint_configs:
        arn = FakeEndpointConfig.arn_formatter(config_name, backend.account_id,
                                               backend.region_name)
        return aws_error(400, "ValidationException",
                         f'Could not find endpoint configuration "{arn}".')
    try:
        plan = rollout.plan(params.get("DeploymentConfig"))
        _check_update(endpoints, backend, state, config_name, plan)
        endpoints.start_update(state, config_name, bool(params.get("RetainAllVariantProperties")), plan)
    except (EndpointBusy, rollout.InvalidDeploymentConfig) as error:
        return aws_error(400, "ValidationException", str(error))
    return json_response(200, {"EndpointArn": state.record.arn})


def _check_update(endpoints: SageMakerEndpoints, backend: SageMakerModelBackend, state: EndpointState,
                  config_name: str, plan: rollout.RolloutPlan | None) -> None:
    """What SageMaker refuses before updating: a guarded update must keep the variant names
    (deployment-guardrails-exclusions.html); an autoscaled variant may change its model but not
    its instance type (endpoint-scaling-update.html)."""
    new = {v["VariantName"]: v for v in backend.describe_endpoint_config(config_name)["ProductionVariants"]}
    old = {v["VariantName"]: v for v in
           backend.describe_endpoint_config(state.record.endpoint_config_name)["ProductionVariants"]}
    if plan is not None and plan.mode == "CANARY":
        for variant in new.values():  # the canary's share of each new fleet (≤ 50 %)
            plan.canary_share(int(variant.get("InitialInstanceCount") or 1))
    if plan is not None and set(new) != set(old):
        raise rollout.InvalidDeploymentConfig(
            "The new endpoint configuration must have the same variant names as the old one for a "
            f"blue/green deployment with a DeploymentConfig (old: {sorted(old)}, new: {sorted(new)}).")
    scaling = endpoints.cloud.backend("application-autoscaling", state.key[1])
    targets = scaling.targets.get(VARIANT_DIMENSION, {})
    for name, variant in new.items():
        resource = scaling_resource_id(state.key[2], name)
        retyped = name in old and old[name].get("InstanceType") != variant.get("InstanceType")
        if resource in targets and retyped:
            raise EndpointBusy(
                f"The variant {name} of endpoint {state.key[2]} is registered with Application Auto "
                "Scaling; deregister it before changing its instance type "
                f"({old[name].get('InstanceType')} → {variant.get('InstanceType')}).")


def install(cloud: LocalCloud) -> SageMakerEndpoints:
    endpoints = SageMakerEndpoints(cloud)
    backend_class = SageMakerModelBackend

    # The wrappers read the originals at call time; cloud.patch restores them on stop.
    def create_endpoint(backend: SageMakerModelBackend, endpoint_name: str,
                        endpoint_config_name: str, tags: Any = None) -> FakeEndpoint:
        return endpoints.create(original_create, backend, endpoint_name, endpoint_config_name,
                                tags)

    def delete_endpoint(backend: SageMakerModelBackend, endpoint_name: str) -> None:
        endpoints.delete(original_delete, backend, endpoint_name)

    def update_endpoint_weights_and_capacities(
            backend: SageMakerModelBackend, endpoint_name: str,
            desired_weights_and_capacities: list[dict[str, Any]]) -> str:
        return endpoints.update_weights_and_capacities(backend, endpoint_name,
                                                       desired_weights_and_capacities)

    original_create = cloud.patch(backend_class, "create_endpoint", create_endpoint)
    original_delete = cloud.patch(backend_class, "delete_endpoint", delete_endpoint)
    cloud.patch(backend_class, "update_endpoint_weights_and_capacities",
                update_endpoint_weights_and_capacities)
    cloud.add_route(_is_runtime_invoke, endpoints.handle_invoke)
    cloud.add_route(match_target("SageMaker.UpdateEndpoint"),
                    lambda request: _handle_update(endpoints, request))
    supervisor = threading.Thread(target=endpoints._supervise, name="sagemaker-health",
                                  daemon=True)
    supervisor.start()
    cloud.on_stop(endpoints.shutdown)
    return endpoints
