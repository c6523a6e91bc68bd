"""CheckEndpoint: one poll of the endpoint; InService on this run's config ends the loop, and
endpoint.max_wait_seconds after DeployEndpoint's first attempt, EndpointTimedOut (to Cleanup).

The registry follows the endpoint: this run's package is marked Live once the endpoint serves it
(and the package it replaced Superseded); a guarded update SageMaker rolled back marks the package
RolledBack (Rejected, with the alarm's reason) and fails the run as RolloutRolledBack.
"""

from __future__ import annotations

import time

from handlers import registry as R
from handlers.common import client, state_handler, with_section
from handlers.errors import EndpointFailed, EndpointTimedOut, RolloutRolledBack
from handlers.rollout import rolled_back


def mark_live(doc: dict) -> None:
    package = doc.get("model_package", {}).get("arn")
    if not package:
        return
    R.update_metadata(package, {R.ROLLOUT: "Live"})
    replaced = doc.get("baseline", {}).get("model_data")
    if replaced:
        for other in R.packages(R.group_name()):
            container = (other.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
            live = other.get("CustomerMetadataProperties", {}).get(R.ROLLOUT) == "Live"
            if live and other["ModelPackageArn"] != package and container.get("ModelDataUrl") == replaced:
                R.update_metadata(other["ModelPackageArn"], {R.ROLLOUT: "Superseded"})


@state_handler
def handler(doc: dict) -> dict:
    name, config = doc["endpoint"]["name"], doc["endpoint_config"]["name"]
    described = client("sagemaker").describe_endpoint(EndpointName=name)
    status = described["EndpointStatus"]
    if status == "Failed":
        raise EndpointFailed(f"{name}: {described.get('FailureReason', 'endpoint failed')}")
    reason = rolled_back(described, config)
    if reason:
        package = doc.get("model_package", {}).get("arn")
        if package:
            R.update_metadata(package, {R.ROLLOUT: "RolledBack"}, ModelApprovalStatus="Rejected",
                              ApprovalDescription=reason[:1024])
        raise RolloutRolledBack(f"{name} stayed on {described['EndpointConfigName']}: {reason}")
    deadline = doc["endpoint"].get("max_wait_seconds")
    started = doc["endpoint"].get("started_at")
    if status != "InService" and deadline and started and time.time() - started > deadline:
        raise EndpointTimedOut(f"{name} still {status} after {deadline} s (endpoint.max_wait_seconds)")
    if status == "InService":
        mark_live(doc)
    variants = described.get("ProductionVariants", [])
    return with_section(doc, "endpoint", {
        "status": status,
        "instance_count": variants[0].get("CurrentInstanceCount") if variants else None,
    })
