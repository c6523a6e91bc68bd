"""CloudWatch metric alarms evaluated from the local cloud's own metrics (moto stores alarms and
datapoints but never evaluates an alarm).

An alarm is evaluated over its last ``EvaluationPeriods`` windows of ``Period`` seconds, ending
now: a window's statistic (Sum, Average, Minimum, Maximum, SampleCount) over the datapoints whose
namespace, name and exact dimension set are the alarm's; ALARM when at least
``DatapointsToAlarm`` windows breach the threshold. Windows without data follow
``TreatMissingData`` (missing/ignore: they neither breach nor clear; all missing keeps the state,
or INSUFFICIENT_DATA). A changed state is written with SetAlarmState, so DescribeAlarms shows
it with its reason and StateUpdatedTimestamp.

Difference from AWS, on purpose: AWS evaluates completed, clock-aligned periods (and an endpoint's
metrics arrive per minute), so it reacts up to a period later; here the newest window ends now.
"""

from __future__ import annotations

import json
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from moto.core.utils import utcnow

STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum, "Average": statistics.fmean, "Minimum": min, "Maximum": max,
    "SampleCount": lambda values: float(len(values)),
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge, "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt, "LessThanOrEqualToThreshold": operator.le,
}


@dataclass(frozen=True)
class Evaluation:
    name: str
    state: str  # OK, ALARM or INSUFFICIENT_DATA
    reason: str
    changed_at: datetime


def _dimensions(items: Any) -> frozenset[tuple[str, str]]:
    return frozenset((d.name, d.value) for d in items or [])


def _window_values(backend: Any, alarm: Any, start: datetime, end: datetime) -> list[float]:
    wanted = _dimensions(alarm.dimensions)
    return [float(datum.value) for datum in backend.get_all_metrics()
            if datum.namespace == alarm.namespace and datum.name == alarm.metric_name
            and hasattr(datum, "value") and _dimensions(datum.dimensions) == wanted
            and start <= datum.timestamp.replace(tzinfo=None) < end]


def _judge(backend: Any, alarm: Any, now: datetime) -> tuple[str, str]:
    period, count = int(alarm.period), int(alarm.evaluation_periods)
    needed = int(alarm.datapoints_to_alarm or count)
    compare = COMPARISONS[alarm.comparison_operator]
    breaching, seen, shown = 0, 0, []
    for index in range(count):
        end = now - timedelta(seconds=index * period)
        values = _window_values(backend, alarm, end - timedelta(seconds=period), end)
        if not values:
            if alarm.treat_missing_data == "breaching":
                breaching += 1
            continue
        value = STATISTICS[alarm.statistic](values)
        seen += 1
        shown.append(round(value, 3))
        breaching += compare(value, float(alarm.threshold))
    if breaching >= needed:
        return "ALARM", (f"Threshold Crossed: {breaching} of {count} datapoints {shown} were "
                         f"{alarm.comparison_operator} {alarm.threshold}")
    if seen == 0 and alarm.treat_missing_data not in ("notBreaching", "breaching"):
        state = alarm.state_value if alarm.state_value != "OK" else "INSUFFICIENT_DATA"
        return state, "Insufficient Data: no datapoints in the evaluation periods"
    return "OK", f"Threshold not crossed: datapoints {shown} (missing ones: {alarm.treat_missing_data})"


def evaluate(backend: Any, names: list[str]) -> list[Evaluation]:
    """Evaluate the named metric alarms of a region's CloudWatch backend now; unknown names are
    reported INSUFFICIENT_DATA (an alarm that does not exist never trips)."""
    now = utcnow().replace(tzinfo=None)
    found = []
    for name in names:
        alarm = backend.alarms.get(name)
        if alarm is None or not alarm.metric_name:
            found.append(Evaluation(name, "INSUFFICIENT_DATA", "no such metric alarm", now))
            continue
        state, reason = _judge(backend, alarm, now)
        if state != alarm.state_value:
            backend.set_alarm_state(name, reason, json.dumps({"evaluatedAt": now.isoformat()}), state)
        found.append(Evaluation(name, alarm.state_value, alarm.state_reason,
                                alarm.state_updated_timestamp))
    return found
