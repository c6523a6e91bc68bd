"""Run-scoped names and tags: the one place both sides of the IAM boundary agree on them.

Handlers create and find a run's resources by these; ``infra_scripts/policies.py`` scopes the
roles by the tag; teardown and the progress display find what a run left. Pure functions, no
imports beyond the standard library, so the Lambda package and the operator side share them.
"""

from __future__ import annotations

import hashlib
import re

RUN_TAG = "stepml:run-id"  # every run-scoped resource and instance carries it, valued with the run id
SAGEMAKER_NAME_LIMIT = 63  # training job, model and endpoint config names
TUNING_NAME_LIMIT = 32
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def run_id(execution_name: str) -> str:
    """A name for this run's resources: stable across retries and redrives, ≤ 49 chars."""
    cleaned = re.sub(r"[^a-zA-Z0-9-]", "-", execution_name).strip("-")[:40] or "run"
    digest = hashlib.sha1(execution_name.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def resource_name(run: str) -> str:
    """The run's training job, model and endpoint config name."""
    return run[:SAGEMAKER_NAME_LIMIT]


def tuning_job_name(run: str) -> str:
    """The run's tuning job name; a digest, since tuning job names stop at 32 characters."""
    return "hpo-" + hashlib.sha1(run.encode()).hexdigest()[:20]


def instance_name(run: str) -> str:
    return f"stepml-{run}"


def run_tags(run: str) -> list[dict[str, str]]:
    """The Tags of a Create* request for a run-scoped resource."""
    return [{"Key": RUN_TAG, "Value": run}]


def run_of(tags: list[dict[str, str]]) -> str | None:
    """Which run a resource belongs to, from its Tags (None: not a run's)."""
    return {tag["Key"]: tag["Value"] for tag in tags}.get(RUN_TAG)


def run_instance_filter(runs: list[str] | None = None) -> dict:
    """A DescribeInstances filter for the given runs' instances, or every run's."""
    if runs is None:
        return {"Name": "tag-key", "Values": [RUN_TAG]}
    return {"Name": f"tag:{RUN_TAG}", "Values": list(runs)}


def scaling_resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's ResourceId of an endpoint variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def scales_endpoint(resource_id: str, endpoint: str) -> bool:
    return resource_id.startswith(scaling_resource_id(endpoint, ""))


def scaling_policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations-per-instance"
