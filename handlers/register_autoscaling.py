"""RegisterAutoscaling: target tracking on invocations per instance for the endpoint's variant."""

from __future__ import annotations

from handlers.common import client, state_handler, with_section
from handlers.naming import VARIANT_DIMENSION as DIMENSION
from handlers.naming import scaling_policy_name, scaling_resource_id


@state_handler
def handler(doc: dict) -> dict:
    scaling = doc["autoscaling"]
    resource_id = scaling_resource_id(doc["endpoint"]["name"], doc["endpoint_config"]["variant"])
    policy_name = scaling_policy_name(doc["endpoint"]["name"])
    autoscaling = client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION,
        MinCapacity=int(scaling["min"]), MaxCapacity=int(scaling["max"]),
    )
    autoscaling.put_scaling_policy(
        PolicyName=policy_name, ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling["target"]),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": int(scaling["scale_in_cooldown"]),
            "ScaleOutCooldown": int(scaling["scale_out_cooldown"]),
        },
    )
    return with_section(doc, "autoscaling", {"resource_id": resource_id, "policy_name": policy_name,
                                             "registered": True})
