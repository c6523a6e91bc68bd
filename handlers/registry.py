"""The model registry's shared vocabulary: one Model Package Group per stack, one package per run.

A package's lineage and gate decision live in its CustomerMetadataProperties under the keys below
(SageMaker allows 50 entries of ≤ 256 characters); the registering handler, the gate, CheckEndpoint,
the CLI and the console all read and write them through this module.
"""

from __future__ import annotations

import hashlib
from typing import Any

from handlers.common import client, sagemaker_describe, setting, split_s3_uri
from handlers.naming import RUN_TAG

RUN = RUN_TAG  # the package's run, as on every run-scoped resource
DATASET = "stepml:dataset-uri"
MANIFEST = "stepml:dataset-manifest-sha256"
TRAINING_CODE = "stepml:training-code-sha256"
INFERENCE_CODE = "stepml:inference-code-sha256"
TRAINING_JOB = "stepml:training-job-arn"
EXECUTION = "stepml:execution-arn"
GIT_COMMIT = "stepml:git-commit"
ACCURACY = "stepml:test-accuracy"
LIVE_ACCURACY = "stepml:live-accuracy"
LIVE_PACKAGE = "stepml:live-model-data"
DECISION = "stepml:gate-decision"
REASON = "stepml:gate-reason"
ROLLOUT = "stepml:rollout"  # Live, RolledBack, Superseded
HYPERPARAMETER = "hp:"  # one entry per hyperparameter
VALUE_LIMIT = 256


def group_name() -> str:
    return setting("MODEL_PACKAGE_GROUP")


def manifest_digest(dataset_uri: str) -> tuple[str, int]:
    """sha256 over the dataset's sorted "key<TAB>ETag" lines, and the object count: the same data
    gives the same digest, any added, removed or rewritten object changes it."""
    bucket, prefix = split_s3_uri(dataset_uri)
    lines = []
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        lines += [f"{item['Key']}\t{item['ETag']}" for item in page.get("Contents", [])]
    lines.sort()
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)


def packages(group: str, sagemaker: Any = None) -> list[dict[str, Any]]:
    """Every package of the group, newest first, described (with metadata)."""
    sagemaker = sagemaker or client("sagemaker")
    summaries: list[dict] = []
    token = None
    while True:
        page = sagemaker.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime",
                                             SortOrder="Descending",
                                             **({"NextToken": token} if token else {}))
        summaries += page.get("ModelPackageSummaryList", [])
        token = page.get("NextToken")
        if not token:
            break
    return [sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


def package_of_run(group: str, run_id: str) -> dict[str, Any] | None:
    """This run's package (Retry and redrive must not register a second one)."""
    return next((p for p in packages(group)
                 if p.get("CustomerMetadataProperties", {}).get(RUN) == run_id), None)


def live_model_data(endpoint: str, sagemaker: Any = None) -> str | None:
    """The model.tar.gz the endpoint serves now (None: no endpoint, or not serving)."""
    sagemaker = sagemaker or client("sagemaker")
    described = sagemaker_describe("describe_endpoint", sagemaker, EndpointName=endpoint)
    if described is None or described["EndpointStatus"] not in ("InService", "Updating"):
        return None
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return container.get("ModelDataUrl")


def update_metadata(arn: str, values: dict[str, str], sagemaker: Any = None, **fields: Any) -> None:
    """Set some metadata entries (and ModelApprovalStatus/ApprovalDescription) on a package.

    The current entries, status and description are sent along: AWS adds the given entries to
    the package's, moto 5.2 replaces them all and clears an omitted description.
    """
    sagemaker = sagemaker or client("sagemaker")
    current = sagemaker.describe_model_package(ModelPackageName=arn)
    merged = {**current.get("CustomerMetadataProperties", {}),
              **{k: v[:VALUE_LIMIT] for k, v in values.items()}}
    fields.setdefault("ModelApprovalStatus", current.get("ModelApprovalStatus"))
    if current.get("ApprovalDescription"):
        fields.setdefault("ApprovalDescription", current["ApprovalDescription"])
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties=merged,
                                   **{k: v for k, v in fields.items() if v is not None})
