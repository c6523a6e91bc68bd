"""UpdateEndpoint's DeploymentConfig on the local cloud: blue/green with canary or all-at-once
traffic shifting, baking periods watched by CloudWatch alarms, automatic rollback.

The steps follow SageMaker's deployment guardrails
(https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html):
the green fleet is provisioned in full while blue serves; CANARY routes the canary's share of
traffic to green and bakes for WaitIntervalInSeconds; then all traffic moves to green, and blue
stays up TerminationWaitInSeconds more. Any AutoRollbackConfiguration alarm in ALARM during a
bake (or the termination wait, or past MaximumExecutionTimeoutInSeconds) sends all traffic back
to blue at once and removes green; the endpoint goes RollingBack → InService on its old config,
with the reason in FailureReason.

Checked as AWS does (API_BlueGreenUpdatePolicy, API_TrafficRoutingConfig, the canary page):
WaitIntervalInSeconds 0–3600, TerminationWaitInSeconds 0–3600, MaximumExecutionTimeoutInSeconds
600–28800 and larger than the waits, the canary ≤ 50 % of the new fleet, 1–10 alarms. LINEAR
shifting and RollingUpdatePolicy are refused here (not emulated), never silently run as
something else.

Traffic split: a smooth weighted round robin, so a canary of share ≤ 50 % never takes two
requests in a row: a caller's retry of a canary failure goes to blue. (AWS routes at random.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

CANARY_MAX_SHARE = 0.5


class InvalidDeploymentConfig(ValueError):
    """A DeploymentConfig AWS would refuse (ValidationException), or one not emulated here."""


@dataclass
class RolloutPlan:
    mode: str  # CANARY or ALL_AT_ONCE
    canary: dict[str, Any] | None
    wait_s: float
    termination_wait_s: float
    max_s: float
    alarms: list[str]

    def canary_share(self, fleet_size: int) -> float:
        size = self.canary or {}
        if size.get("Type") == "INSTANCE_COUNT":
            share = int(size["Value"]) / max(1, fleet_size)
        else:
            share = float(size.get("Value", 0)) / 100.0
        if not 0 < share <= CANARY_MAX_SHARE:
            raise InvalidDeploymentConfig(
                "The canary size must be at most 50% of the new fleet's capacity "
                f"(CanarySize {size}, new fleet of {fleet_size} instance(s)).")
        return share


@dataclass
class Canary:
    """Green's share of one variant's traffic while it bakes."""

    variant: str
    fleet: Any  # instances.Fleet
    config_name: str
    share: float
    _credit: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def takes_next(self) -> bool:
        with self._lock:
            self._credit += self.share
            if self._credit >= 1.0 - 1e-9:
                self._credit -= 1.0
                return True
            return False


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if value is None:
        return low
    if not isinstance(value, int) or not low <= value <= high:
        raise InvalidDeploymentConfig(f"Value '{value}' at '{name}' failed to satisfy constraint: "
                                      f"Member must have value between {low} and {high}")
    return value


def plan(config: dict[str, Any] | None) -> RolloutPlan | None:
    """The plan of a DeploymentConfig; None: no guarded rollout (plain blue/green all at once)."""
    if not config:
        return None
    if config.get("RollingUpdatePolicy"):
        raise InvalidDeploymentConfig("RollingUpdatePolicy is not emulated by the local cloud.")
    policy = config.get("BlueGreenUpdatePolicy") or {}
    routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE"}
    mode = routing.get("Type")
    if mode not in ("ALL_AT_ONCE", "CANARY", "LINEAR"):
        raise InvalidDeploymentConfig(f"Value '{mode}' at 'TrafficRoutingConfiguration.Type' failed to "
                                      "satisfy constraint: Member must satisfy enum value set: "
                                      "[ALL_AT_ONCE, CANARY, LINEAR]")
    if mode == "LINEAR":
        raise InvalidDeploymentConfig("LINEAR traffic shifting is not emulated by the local cloud.")
    if mode == "CANARY" and not routing.get("CanarySize"):
        raise InvalidDeploymentConfig("CanarySize is required for CANARY traffic routing.")
    wait = _integer(routing.get("WaitIntervalInSeconds"), "WaitIntervalInSeconds", 0, 3600)
    termination = _integer(policy.get("TerminationWaitInSeconds"), "TerminationWaitInSeconds", 0, 3600)
    maximum = _integer(policy.get("MaximumExecutionTimeoutInSeconds") or 28800,
                       "MaximumExecutionTimeoutInSeconds", 600, 28800)
    if maximum <= wait + termination:
        raise InvalidDeploymentConfig("MaximumExecutionTimeoutInSeconds must be larger than "
                                      "TerminationWaitInSeconds plus WaitIntervalInSeconds.")
    alarms = [a.get("AlarmName") for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    if len(alarms) > 10 or not all(isinstance(a, str) and a for a in alarms):
        raise InvalidDeploymentConfig("AutoRollbackConfiguration.Alarms takes 1 to 10 alarm names.")
    return RolloutPlan(mode, routing.get("CanarySize"), float(wait), float(termination),
                       float(maximum), alarms)
