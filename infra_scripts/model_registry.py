"""The registry as the operator sees it: versions with status, scores, lineage and which is live.

A thin client over the stack's Model Package Group; the vocabulary (metadata keys) is the
handlers' (``handlers/registry.py``), so what the pipeline writes and what ``stepml models`` and
the console read cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from handlers import registry as R
from handlers.common import split_s3_uri


@dataclass
class Version:
    version: int
    arn: str
    status: str  # ModelApprovalStatus
    reason: str  # ApprovalDescription: the gate's (or a rollback's) reason
    accuracy: float | None
    live_accuracy: float | None  # the then-live model's, on this run's test split
    rollout: str  # Live, RolledBack, Superseded or "" (never deployed)
    model_data: str
    image: str
    created: str
    report_uri: str
    live: bool = False  # the endpoint serves this version's model data now
    lineage: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def from_package(package: dict[str, Any], live_data: str | None) -> Version:
    meta = package.get("CustomerMetadataProperties", {})
    container = (package.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
    report = (package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}) or {})
    hyper = {k[len(R.HYPERPARAMETER):]: json.loads(v) for k, v in meta.items()
             if k.startswith(R.HYPERPARAMETER)}
    lineage = {k.split(":", 1)[1]: v for k, v in meta.items()
               if k.startswith("stepml:") and k not in (R.ACCURACY, R.LIVE_ACCURACY, R.ROLLOUT)}
    created = package.get("CreationTime")
    return Version(
        version=int(package.get("ModelPackageVersion") or package["ModelPackageArn"].rsplit("/", 1)[-1]),
        arn=package["ModelPackageArn"], status=package.get("ModelApprovalStatus", ""),
        reason=package.get("ApprovalDescription", ""), accuracy=_number(meta.get(R.ACCURACY)),
        live_accuracy=_number(meta.get(R.LIVE_ACCURACY)), rollout=meta.get(R.ROLLOUT, ""),
        model_data=container.get("ModelDataUrl", ""), image=container.get("Image", ""),
        created=created.isoformat() if hasattr(created, "isoformat") else str(created or ""),
        report_uri=report.get("S3Uri", ""),
        live=bool(live_data) and container.get("ModelDataUrl") == live_data,
        lineage=lineage, hyperparameters=hyper)


def versions(sagemaker: Any, group: str, endpoint: str) -> list[Version]:
    """Every version, newest first; none when the group does not exist yet (nothing deployed)."""
    try:
        found = R.packages(group, sagemaker)
    except sagemaker.exceptions.ClientError:
        return []
    live = R.live_model_data(endpoint, sagemaker)
    return [from_package(p, live) for p in found]


def find(sagemaker: Any, group: str, endpoint: str, version: int) -> Version:
    for item in versions(sagemaker, group, endpoint):
        if item.version == version:
            return item
    raise LookupError(f"no version {version} in model package group {group}")


def evaluation_report(s3: Any, version: Version) -> dict[str, Any] | None:
    """The evaluation report ModelMetrics points at (accuracy, per-class, confusion, history)."""
    if not version.report_uri:
        return None
    bucket, key = split_s3_uri(version.report_uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
