"""Autoscaling timeline on the local cloud (issue 4): sustained load above the target scales a
real endpoint 1 → 2 model-server processes; when the load stops it scales back to 1.

Target tracking on SageMakerVariantInvocationsPerInstance, target 50 per instance per minute
(the pipeline's default), min 1, max 2. AWS's one-minute metric periods are shortened by the
local cloud's knobs (see KNOBS) so the run takes about two minutes; the logic is AWS's: N
consecutive breaching evaluations, cooldowns from the policy, desired = ceil(rate / target).

Run: .venv/bin/python -m benchmarks.bench_autoscaling [--rate 4] [--load-seconds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from botocore.config import Config

from benchmarks.bench_predict_load import deploy_endpoint, event
from benchmarks.machine import percentile, write_report
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings

ENDPOINT = "bench-autoscaling"
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TARGET = 50.0
SCALE_OUT_COOLDOWN_S = 10
SCALE_IN_COOLDOWN_S = 20
KNOBS = {"evaluation_period_s": 1.0, "metric_window_s": 10.0, "scale_out_evaluations": 3,
         "scale_in_evaluations": 5}


@dataclass
class Sample:
    t_s: float
    phase: str
    status: str
    current: int
    desired: int
    processes: int
    per_instance_per_min: float | None


def register(cloud: LocalCloud) -> None:
    autoscaling = cloud.boto3_client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION,
        MinCapacity=1, MaxCapacity=2)
    autoscaling.put_scaling_policy(
        PolicyName="invocations-per-instance", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": TARGET,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S, "ScaleInCooldown": SCALE_IN_COOLDOWN_S})


class Load:
    """A steady request rate against the endpoint from one thread; counts failures."""

    def __init__(self, cloud: LocalCloud, rate: float) -> None:
        self.client = cloud.boto3_client("sagemaker-runtime",
                                         config=Config(retries={"total_max_attempts": 1}))
        self.interval = 1.0 / rate
        self.body = json.loads(event())  # {"image": base64}, what the predict Lambda sends
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        payload = json.dumps(self.body)
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                self.client.invoke_endpoint(EndpointName=ENDPOINT, Body=payload,
                                            ContentType="application/json")["Body"].read()
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
            except Exception as error:
                self.errors.append(repr(error)[:200])
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def sample(cloud: LocalCloud, t0: float, phase: str) -> Sample:
    description = cloud.boto3_client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    variant = description["ProductionVariants"][0]
    endpoints = cloud.extensions["sagemaker.endpoints"]
    key = (cloud.account_id, cloud.region, ENDPOINT)
    readings = cloud.extensions["autoscaling.controller"].readings
    return Sample(
        t_s=round(time.monotonic() - t0, 1), phase=phase, status=description["EndpointStatus"],
        current=variant["CurrentInstanceCount"], desired=variant["DesiredInstanceCount"],
        processes=len(endpoints.instances(key, "AllTraffic")),
        per_instance_per_min=round(readings[-1].per_instance_per_minute, 1) if readings else None)


def watch(cloud: LocalCloud, t0: float, phase: str, until: Any, timeout_s: float,
          timeline: list[Sample]) -> None:
    """Sample every 0.5 s, keeping a row on any change (and every 5 s), until ``until``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = sample(cloud, t0, phase)
        last = timeline[-1] if timeline else None
        changed = last is None or row.t_s - last.t_s >= 5 or (
            row.phase, row.status, row.current, row.desired, row.processes) != (
            last.phase, last.status, last.current, last.desired, last.processes)
        if changed:
            timeline.append(row)
            print(f"{row.t_s:7.1f}s {row.phase:5} {row.status:9} current={row.current} "
                  f"desired={row.desired} processes={row.processes} "
                  f"per-instance/min={row.per_instance_per_min}", flush=True)
        if until(row):
            return
        time.sleep(0.5)


def markdown(summary: dict[str, Any], timeline: list[Sample],
             activities: list[dict[str, Any]]) -> str:
    lines = [
        "## Autoscaling timeline (local cloud)",
        "",
        f"Target tracking: {TARGET:g} invocations/instance/min, min 1, max 2, cooldowns out "
        f"{SCALE_OUT_COOLDOWN_S} s / in {SCALE_IN_COOLDOWN_S} s; knobs {KNOBS}. Load: "
        f"{summary['rate_per_s']} req/s for {summary['load_s']} s straight to InvokeEndpoint "
        f"(about {summary['rate_per_s'] * 60:g}/min), then none.",
        "",
        f"- scale-out decided {summary['scale_out_decided_s']} s after load start, second "
        f"instance InService at {summary['scale_out_done_s']} s",
        f"- back to 1 instance {summary['scale_in_done_s_after_stop']} s after the load stopped",
        f"- requests during the run: {summary['requests']}, failed: {summary['errors']}, "
        f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms",
        f"- 1-min load average before / after: {summary['load_average_1m']} (other work on a "
        "shared machine slows the model server's start, i.e. the scale-out's second half)",
        "",
        "| t (s) | phase | status | current | desired | serving processes | invocations/instance/min |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in timeline:
        lines.append(f"| {row.t_s} | {row.phase} | {row.status} | {row.current} | {row.desired} "
                     f"| {row.processes} | {row.per_instance_per_min} |")
    lines += ["", "DescribeScalingActivities (oldest first):", ""]
    for activity in reversed(activities):
        lines.append(f"- {activity['Description']} {activity['StatusCode']} — "
                     f"{activity['Cause']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second")
    parser.add_argument("--load-seconds", type=float, default=40.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    settings = LocalCloudSettings(options={"autoscaling": KNOBS})
    timeline: list[Sample] = []
    with LocalCloud(settings=settings) as cloud:
        deploy_endpoint(cloud, ENDPOINT)
        register(cloud)
        load = Load(cloud, args.rate)
        t0 = time.monotonic()
        load.start()
        watch(cloud, t0, "load", lambda row: False, args.load_seconds, timeline)
        load.stop()
        stopped = time.monotonic() - t0
        watch(cloud, t0, "idle", lambda row: row.status == "InService" and row.current == 1
              and row.processes == 1, 180, timeline)
        activities = cloud.boto3_client("application-autoscaling").describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingActivities"]
    out_decided = next((r.t_s for r in timeline if r.desired == 2), None)
    out_done = next((r.t_s for r in timeline if r.current == 2 and r.status == "InService"), None)
    back = next((r.t_s for r in timeline if r.phase == "idle" and r.current == 1
                 and r.processes == 1 and r.status == "InService"), None)
    summary = {
        "rate_per_s": args.rate, "load_s": args.load_seconds, "target": TARGET,
        "scale_out_decided_s": out_decided, "scale_out_done_s": out_done,
        "scale_in_done_s_after_stop": round(back - stopped, 1) if back is not None else None,
        "requests": len(load.latencies_ms) + len(load.errors), "errors": len(load.errors),
        "p50_ms": round(percentile(load.latencies_ms, 0.5), 1),
        "p99_ms": round(percentile(load.latencies_ms, 0.99), 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    path = write_report(
        "bench_autoscaling",
        {"summary": summary, "knobs": KNOBS, "timeline": [asdict(r) for r in timeline],
         "activities": [{k: v.isoformat() if hasattr(v, "isoformat") else v
                         for k, v in a.items()} for a in activities]},
        markdown(summary, timeline, activities))
    print(path.read_text())


if __name__ == "__main__":
    main()
