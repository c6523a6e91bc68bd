"""The registry as the operator sees it: versions with status, scores, lineage and which is live.

A thin client over the stack's Model Package Group; the vocabulary (metadata keys) is the
handlers' (``handlers/registry.py``), so what the pipeline writes and what ``stepml models`` and
the console read cannot drift apart.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from handlers import registry as R
from handlers.common import split_s3_uri
from handlers.naming import run_tags
from handlers.rollout import guarded_update, rolled_back


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


# -- promote / rollback: the same guarded rollout the pipeline uses ------------------------------
@dataclass
class Outcome:
    version: int
    config: str
    rolled_back: str | None  # SageMaker's reason, when the alarms sent traffic back
    seconds: float


def _model_and_config(sagemaker: Any, target: Version, endpoint: dict, variant: dict) -> str:
    """A model and endpoint config serving the version, shaped like the live variant."""
    live_model = sagemaker.describe_model(ModelName=variant["ModelName"])
    container = live_model.get("PrimaryContainer") or {}
    name = f"{endpoint['EndpointName'][:40]}-v{target.version}-{int(time.time())}"
    tags = run_tags(f"promote-v{target.version}")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=live_model["ExecutionRoleArn"], Tags=tags,
                           PrimaryContainer={"Image": target.image, "ModelDataUrl": target.model_data,
                                             "Environment": container.get("Environment", {})})
    sagemaker.create_endpoint_config(EndpointConfigName=name, Tags=tags, ProductionVariants=[{
        "VariantName": variant["VariantName"], "ModelName": name,
        "InstanceType": variant["InstanceType"],
        "InitialInstanceCount": int(variant.get("InitialInstanceCount") or 1),
        "InitialVariantWeight": 1.0}])
    return name


def promote(clients: Any, group: str, endpoint_name: str, version: int, settings: dict,
            timeout_s: float = 3600, poll_s: float = 2.0) -> Outcome:
    """Serve ``version`` through the guarded rollout (canary, alarms, automatic rollback), wait for
    the outcome, and record it in the registry (Live and Superseded, or RolledBack)."""
    sagemaker, cloudwatch = clients.client("sagemaker"), clients.client("cloudwatch")
    target = find(sagemaker, group, endpoint_name, version)
    if target.status != "Approved":
        raise ValueError(f"version {version} is {target.status}, not Approved: {target.reason}")
    if target.live:
        raise ValueError(f"version {version} is already live")
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    current = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = current["ProductionVariants"][0]
    previous = [v for v in versions(sagemaker, group, endpoint_name) if v.live]
    config = _model_and_config(sagemaker, target, endpoint, variant)
    started = time.monotonic()
    guarded_update(sagemaker, cloudwatch, endpoint_name, variant["VariantName"], config, settings)
    described = _settle(sagemaker, endpoint_name, started + timeout_s, poll_s)
    reason = rolled_back(described, config)
    if reason:
        _mark(sagemaker, target.arn, {R.ROLLOUT: "RolledBack"}, ModelApprovalStatus="Rejected",
              ApprovalDescription=reason[:1024])
    else:
        _mark(sagemaker, target.arn, {R.ROLLOUT: "Live"})
        for old in previous:
            _mark(sagemaker, old.arn, {R.ROLLOUT: "Superseded"})
    return Outcome(version, config, reason, time.monotonic() - started)


def rollback_target(sagemaker: Any, group: str, endpoint_name: str) -> int:
    """The version to roll back to: the newest Approved one before the live one."""
    found = versions(sagemaker, group, endpoint_name)
    live = next((v.version for v in found if v.live), None)
    for item in found:  # newest first
        if item.status == "Approved" and not item.live and (live is None or item.version < live):
            return item.version
    raise LookupError("no earlier Approved version to roll back to")


def _settle(sagemaker: Any, endpoint: str, deadline: float, poll_s: float) -> dict:
    while True:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        if described["EndpointStatus"] not in ("Updating", "RollingBack", "SystemUpdating"):
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"{endpoint} still {described['EndpointStatus']}")
        time.sleep(poll_s)


def _mark(sagemaker: Any, arn: str, values: dict[str, str], **fields: Any) -> None:
    R.update_metadata(arn, values, sagemaker=sagemaker, **fields)
