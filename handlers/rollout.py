"""The guarded update of the live endpoint: SageMaker's DeploymentConfig (blue/green, canary,
auto-rollback) and the CloudWatch alarms it watches. Used by DeployEndpoint and by
``stepml promote`` / ``stepml rollback``, so every update of the endpoint is guarded alike.

The alarms watch only the new fleet: SageMaker's endpoint metrics carry EndpointConfigName as
well as EndpointName and VariantName, and an alarm on the new config's series cannot be tripped
by the old fleet (the guardrails' "new fleet" alarm examples,
https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html).
"""

from __future__ import annotations

from typing import Any

# metric → (statistic, threshold from the rollout section, comparison)
ALARMS = {
    "5xx": ("Invocation5XXErrors", "Sum", "max_errors"),
    "model-errors": ("InvocationModelErrors", "Sum", "max_errors"),
    "latency": ("ModelLatency", "Average", "max_latency_ms"),
}


def alarm_name(endpoint: str, kind: str) -> str:
    return f"{endpoint}-rollout-{kind}"


def put_alarms(cloudwatch: Any, endpoint: str, variant: str, config: str, settings: dict) -> list[str]:
    """(Re)point the rollback alarms at the new config's fleet; PutMetricAlarm overwrites."""
    names = []
    for kind, (metric, statistic, key) in ALARMS.items():
        threshold = float(settings[key]) * (1000.0 if metric == "ModelLatency" else 1.0)  # µs
        name = alarm_name(endpoint, kind)
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="AWS/SageMaker", MetricName=metric, Statistic=statistic,
            AlarmDescription=f"roll back {endpoint}'s update to {config}: new-fleet {metric}",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint},
                        {"Name": "VariantName", "Value": variant},
                        {"Name": "EndpointConfigName", "Value": config}],
            Period=int(settings["alarm_period_seconds"]), EvaluationPeriods=1, DatapointsToAlarm=1,
            Threshold=threshold, ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching")
        # PutMetricAlarm keeps an existing alarm's state: one left in ALARM by the last rollback
        # would roll this deployment back at once. It re-evaluates from OK on the new series.
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK",
                                   StateReason=f"reset for the update to {config}")
        names.append(name)
    return names


def deployment_config(settings: dict, alarms: list[str]) -> dict:
    wait, termination = int(settings["wait_seconds"]), int(settings["termination_wait_seconds"])
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY", "WaitIntervalInSeconds": wait,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": int(settings["canary_percent"])}},
            "TerminationWaitInSeconds": termination,
            "MaximumExecutionTimeoutInSeconds": max(600, wait + termination + 600),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


def guarded_update(sagemaker: Any, cloudwatch: Any, endpoint: str, variant: str, config: str,
                   settings: dict) -> None:
    alarms = put_alarms(cloudwatch, endpoint, variant, config, settings)
    sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config,
                              DeploymentConfig=deployment_config(settings, alarms))


def rolled_back(described: dict, config: str) -> str | None:
    """The reason, if the endpoint is serving its old config after an update to ``config``."""
    if described["EndpointStatus"] == "InService" and described["EndpointConfigName"] != config:
        return described.get("FailureReason") or "update rolled back"
    return None
