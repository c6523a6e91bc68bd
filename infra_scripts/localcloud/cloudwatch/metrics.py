"""GetMetricStatistics with AWS's dimension semantics, and PutMetricAlarm updates that keep state.

A CloudWatch metric is identified by its namespace, name and its exact set of dimensions: asking
for {EndpointName, VariantName} must not also count datapoints published with
{EndpointName, VariantName, EndpointConfigName}
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_concepts.html#Dimension).
moto 5.2 matches any datapoint whose dimensions include the requested ones; this wraps its
backend method to select exactly, then lets moto aggregate.

PutMetricAlarm on an existing alarm leaves its StateValue unchanged on AWS ("When updating an
existing alarm, its StateValue is left unchanged",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html);
moto builds a new alarm in state OK. Resetting an alarm is then the caller's SetAlarmState, as
handlers/rollout.py does, here as on AWS.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend

from infra_scripts.localcloud.core.server import LocalCloud


def exact(dimensions: Any) -> frozenset[tuple[str, str]]:
    return frozenset((d["Name"], d["Value"]) if isinstance(d, dict) else (d.name, d.value)
                     for d in dimensions or [])


def install(cloud: LocalCloud) -> None:
    def get_metric_statistics(backend: CloudWatchBackend, namespace: str, metric_name: str,
                              start_time: Any, end_time: Any, period: int, stats: list[str],
                              dimensions: list[dict[str, str]], unit: str | None = None) -> Any:
        wanted = exact(dimensions)
        selected = [datum for datum in backend.get_all_metrics() if exact(datum.dimensions) == wanted]
        view = SimpleNamespace(get_all_metrics=lambda: selected)  # the only state moto reads
        return original(view, namespace, metric_name, start_time, end_time, period, stats, [], unit)

    original = cloud.patch(CloudWatchBackend, "get_metric_statistics", get_metric_statistics)

    def put_metric_alarm(backend: CloudWatchBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        previous = backend.alarms.get(name)
        alarm = original_put(backend, name, *args, **kwargs)
        if previous is not None:  # the new configuration, the old state and its history
            for attribute in ("state_value", "state_reason", "state_reason_data",
                              "state_updated_timestamp", "history"):
                setattr(alarm, attribute, getattr(previous, attribute))
        return alarm

    original_put = cloud.patch(CloudWatchBackend, "put_metric_alarm", put_metric_alarm)
