"""CreateEndpointConfig: one production variant serving this run's model."""

from __future__ import annotations

from handlers.common import client, sagemaker_describe, state_handler, with_section

VARIANT = "AllTraffic"


@state_handler
def handler(doc: dict) -> dict:
    name = doc["run_id"][:63]
    if sagemaker_describe("describe_endpoint_config", EndpointConfigName=name) is None:
        client("sagemaker").create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{
                "VariantName": VARIANT,
                "ModelName": doc["model"]["name"],
                "InstanceType": doc["endpoint"]["instance_type"],
                "InitialInstanceCount": int(doc["endpoint"]["instance_count"]),
                "InitialVariantWeight": 1.0,
            }],
            Tags=[{"Key": "stepml:run-id", "Value": doc["run_id"]}],
        )
    return with_section(doc, "endpoint_config", {"name": name, "variant": VARIANT})
