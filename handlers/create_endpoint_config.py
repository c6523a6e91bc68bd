"""CreateEndpointConfig: one production variant serving this run's model."""

from __future__ import annotations

from handlers.common import check_reusable, client, sagemaker_describe, state_handler, with_section
from handlers.naming import resource_name, run_tags

VARIANT = "AllTraffic"
COMPARED = ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount")


@state_handler
def handler(doc: dict) -> dict:
    name = resource_name(doc["run_id"])
    variant = {
        "VariantName": VARIANT,
        "ModelName": doc["model"]["name"],
        "InstanceType": doc["endpoint"]["instance_type"],
        "InitialInstanceCount": int(doc["endpoint"]["instance_count"]),
        "InitialVariantWeight": 1.0,
    }
    existing = sagemaker_describe("describe_endpoint_config", EndpointConfigName=name)
    if existing is not None:  # a retry or redrive of this run: the same config, or refuse
        found = [{key: v.get(key) for key in COMPARED} for v in existing.get("ProductionVariants", [])]
        wanted = [{key: variant[key] for key in COMPARED}]
        check_reusable("endpoint config", name, existing["EndpointConfigArn"], doc["run_id"],
                       None if found == wanted else f"variants {found}, not {wanted}")
    else:
        client("sagemaker").create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[variant],
            Tags=run_tags(doc["run_id"]),
        )
    return with_section(doc, "endpoint_config", {"name": name, "variant": VARIANT})
