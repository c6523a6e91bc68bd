"""CheckEndpoint: one poll of the endpoint; InService on this run's config ends the loop, and
endpoint.max_wait_seconds after DeployEndpoint's first attempt, EndpointTimedOut (to Cleanup)."""

from __future__ import annotations

import time

from handlers.common import client, state_handler, with_section
from handlers.errors import EndpointFailed, EndpointTimedOut


@state_handler
def handler(doc: dict) -> dict:
    name, config = doc["endpoint"]["name"], doc["endpoint_config"]["name"]
    described = client("sagemaker").describe_endpoint(EndpointName=name)
    status = described["EndpointStatus"]
    if status == "Failed":
        raise EndpointFailed(f"{name}: {described.get('FailureReason', 'endpoint failed')}")
    if status == "InService" and described["EndpointConfigName"] != config:
        # An update that failed rolls back to the previous config and reports why.
        reason = described.get("FailureReason") or "update rolled back"
        raise EndpointFailed(f"{name} stayed on {described['EndpointConfigName']}: {reason}")
    deadline = doc["endpoint"].get("max_wait_seconds")
    started = doc["endpoint"].get("started_at")
    if status != "InService" and deadline and started and time.time() - started > deadline:
        raise EndpointTimedOut(f"{name} still {status} after {deadline} s (endpoint.max_wait_seconds)")
    variants = described.get("ProductionVariants", [])
    return with_section(doc, "endpoint", {
        "status": status,
        "instance_count": variants[0].get("CurrentInstanceCount") if variants else None,
    })
