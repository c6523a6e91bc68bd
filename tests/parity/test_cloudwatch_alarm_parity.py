"""CloudWatch alarms on the local cloud keep their state across an update, as on AWS.

"When updating an existing alarm, its StateValue is left unchanged"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
moto 5.2 rebuilds the alarm in state OK, which would hide a caller that forgets to reset a
tripped rollback alarm before the next rollout (handlers/rollout.py calls SetAlarmState OK); the
local cloud keeps the state (cloudwatch/metrics.py).
"""

from __future__ import annotations

import pytest

from infra_scripts.localcloud.core.server import LocalCloud

CLOUDWATCH = "infra_scripts.localcloud.cloudwatch.metrics"
ALARM = {"AlarmName": "errors", "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
         "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1,
         "ComparisonOperator": "GreaterThanOrEqualToThreshold",
         "Dimensions": [{"Name": "EndpointName", "Value": "e"}]}


@pytest.fixture
def cloudwatch():
    with LocalCloud(extensions=[CLOUDWATCH]) as cloud:
        yield cloud.boto3_client("cloudwatch")


def described(cloudwatch) -> dict:
    return cloudwatch.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]


def test_an_updated_alarm_keeps_its_state_and_takes_the_new_configuration(cloudwatch) -> None:
    cloudwatch.put_metric_alarm(**ALARM)
    cloudwatch.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="tripped")
    tripped = described(cloudwatch)

    cloudwatch.put_metric_alarm(**{**ALARM, "Threshold": 5})

    updated = described(cloudwatch)
    assert (updated["StateValue"], updated["StateReason"]) == ("ALARM", "tripped")
    assert updated["StateUpdatedTimestamp"] == tripped["StateUpdatedTimestamp"]
    assert updated["Threshold"] == 5
    cloudwatch.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="reset")
    assert described(cloudwatch)["StateValue"] == "OK"  # resetting is the caller's call
