"""DeployEndpoint: create the endpoint, or move an existing one to this run's config.

An update is guarded (``handlers/rollout.py``): blue/green with a canary, baked under CloudWatch
alarms on the new fleet, rolled back automatically when one trips. Autoscaling stays registered
when only the model changes, as SageMaker allows; an instance-type change must deregister it first
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html), and
RegisterAutoscaling registers it again afterwards.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from handlers.common import client, error_code, logger, sagemaker_describe, state_handler, with_section
from handlers.errors import EndpointFailed, TransientAwsError
from handlers.naming import VARIANT_DIMENSION, run_of, run_tags, scaling_resource_id
from handlers.rollout import guarded_update


def deregister_autoscaling(name: str, variant: str) -> None:
    try:
        client("application-autoscaling").deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=scaling_resource_id(name, variant),
            ScalableDimension=VARIANT_DIMENSION)
    except ClientError as error:
        if error_code(error) != "ObjectNotFoundException":
            raise


def instance_type(config: str, variant: str) -> str | None:
    described = client("sagemaker").describe_endpoint_config(EndpointConfigName=config)
    return next((v.get("InstanceType") for v in described["ProductionVariants"]
                 if v["VariantName"] == variant), None)


def deploy(doc: dict) -> dict:
    name, config = doc["endpoint"]["name"], doc["endpoint_config"]["name"]
    sagemaker = client("sagemaker")
    current = sagemaker_describe("describe_endpoint", EndpointName=name)
    if current is None:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config,
                                  Tags=run_tags(doc["run_id"]))
        return {"action": "created"}
    if current["EndpointConfigName"] == config:
        # Retry/redrive after this run deployed: the input lacks the first attempt's action, so
        # read it from the endpoint's tag (Cleanup deletes only endpoints this run created).
        tags = sagemaker.list_tags(ResourceArn=current["EndpointArn"]).get("Tags", [])
        created = run_of(tags) == doc["run_id"]
        return {"action": "created" if created else "updated"}
    if current["EndpointStatus"] in ("Creating", "Updating", "SystemUpdating", "RollingBack"):
        raise TransientAwsError(f"endpoint {name} is {current['EndpointStatus']}; retrying")
    if current["EndpointStatus"] == "Failed":
        raise EndpointFailed(f"endpoint {name} is Failed; delete it before redeploying")
    variant = doc["endpoint_config"]["variant"]
    if instance_type(current["EndpointConfigName"], variant) != doc["endpoint"]["instance_type"]:
        deregister_autoscaling(name, variant)
    guarded_update(sagemaker, client("cloudwatch"), name, variant, config, doc["rollout"])
    logger.info("updating endpoint (guarded)", endpoint=name, previous=current["EndpointConfigName"])
    return {"action": "updated", "previous_config": current["EndpointConfigName"]}


@state_handler
def handler(doc: dict) -> dict:
    # The first attempt's start: Retry and redrive keep it, so CheckEndpoint's deadline holds.
    started_at = doc["endpoint"].get("started_at", time.time())
    return with_section(doc, "endpoint", {**deploy(doc), "status": "Deploying", "started_at": started_at})
