"""CreateEndpointConfig: one production variant serving this run's model."""

from __future__ import annotations

from botocore.exceptions import ClientError

from handlers.common import client, error_code, state_handler, with_section

VARIANT = "AllTraffic"


def config_exists(name: str) -> bool:
    try:
        client("sagemaker").describe_endpoint_config(EndpointConfigName=name)
        return True
    except ClientError as error:
        if error_code(error) == "ValidationException":
            return False
        raise


@state_handler
def handler(doc: dict) -> dict:
    name = doc["run_id"][:63]
    if not config_exists(name):
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
