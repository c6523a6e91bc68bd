"""RegisterModel: put this run's trained model in the stack's Model Package Group.

The package carries the inference image and model data, the evaluation report (written to S3 and
referenced by ModelMetrics), the hyperparameters and the lineage: dataset URI and manifest
digest, code bundle digests, training job, execution and git commit. It starts
PendingManualApproval; EvaluationGate approves or rejects it.
"""

from __future__ import annotations

import json
import re
import tarfile

from handlers import registry as R
from handlers.common import client, setting, split_s3_uri, state_handler, with_section
from handlers.errors import TrainingFailed
from handlers.naming import run_tags

REPORT = "evaluation.json"  # written by training/train.py into the model directory
CONTENT_TYPES = ["image/jpeg", "image/png", "application/x-image"]


def read_report(model_artifact: str) -> dict:
    """evaluation.json out of model.tar.gz, streamed: the archive is never held whole."""
    bucket, key = split_s3_uri(model_artifact)
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.lstrip("./") == REPORT:
                return json.load(archive.extractfile(member))
    raise TrainingFailed(f"{model_artifact} holds no {REPORT}: the training script did not evaluate")


def write_report(doc: dict, report: dict) -> str:
    key = f"{doc['model_prefix']}{doc['run_id']}/{REPORT}"
    client("s3").put_object(Bucket=doc["bucket"], Key=key, Body=json.dumps(report, indent=1).encode(),
                            ContentType="application/json")
    return f"s3://{doc['bucket']}/{key}"


def score(report: dict | None) -> float | None:
    if not report or "accuracy" not in report:
        return None
    return float(report["accuracy"])


def bundle_digest(uri: str) -> str:
    """Deploy uploads each code bundle content-addressed (name-<sha256 prefix>.tar.gz)."""
    found = re.search(r"-([0-9a-f]{16,64})\.tar\.gz$", uri)
    return found.group(1) if found else ""


def lineage(doc: dict, report: dict) -> dict[str, str]:
    digest, _count = R.manifest_digest(doc["dataset"]["s3_uri"])
    job = doc["training_job"]
    values = {
        R.RUN: doc["run_id"], R.DATASET: doc["dataset"]["s3_uri"], R.MANIFEST: digest,
        R.TRAINING_CODE: bundle_digest(setting("EC2_CODE_URI", "")),
        R.INFERENCE_CODE: bundle_digest(setting("INFERENCE_SOURCE_URI", "")),
        R.TRAINING_JOB: job.get("arn") or job.get("instance_id", ""),
        R.EXECUTION: doc.get("execution_arn", ""), R.GIT_COMMIT: setting("GIT_COMMIT", ""),
        R.ACCURACY: f"{score(report.get('candidate')):.6f}",
    }
    live = score(report.get("baseline"))
    if live is not None:
        values[R.LIVE_ACCURACY] = f"{live:.6f}"
    for name, value in doc["training"]["hyperparameters"].items():
        values[f"{R.HYPERPARAMETER}{name}"] = json.dumps(value)
    return {key: str(value)[:R.VALUE_LIMIT] for key, value in values.items() if value != ""}


def register(doc: dict, report_uri: str, report: dict) -> dict:
    artifact = doc["training_job"]["model_artifact"]
    response = client("sagemaker").create_model_package(
        ModelPackageGroupName=R.group_name(),
        ModelPackageDescription=f"run {doc['run_id']}: test accuracy "
                                f"{score(report.get('candidate')):.4f}",
        InferenceSpecification={
            "Containers": [{"Image": setting("INFERENCE_IMAGE_URI"), "ModelDataUrl": artifact}],
            "SupportedContentTypes": CONTENT_TYPES, "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [doc["endpoint"]["instance_type"]]},
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": report_uri}}},
        MetadataProperties={k: v for k, v in {
            "CommitId": setting("GIT_COMMIT", ""), "GeneratedBy": doc.get("execution_arn", ""),
            "ProjectId": setting("POWERTOOLS_SERVICE_NAME", "stepml")}.items() if v},
        CustomerMetadataProperties=lineage(doc, report),
        ModelApprovalStatus="PendingManualApproval",
        Tags=run_tags(doc["run_id"]),
    )
    return {"arn": response["ModelPackageArn"]}


@state_handler
def handler(doc: dict) -> dict:
    report = read_report(doc["training_job"]["model_artifact"])
    existing = R.package_of_run(R.group_name(), doc["run_id"])  # a retry or redrive of this run
    report_uri = write_report(doc, report)
    package = {"arn": existing["ModelPackageArn"]} if existing else register(doc, report_uri, report)
    version = int(package["arn"].rsplit("/", 1)[-1])
    return with_section(doc, "model_package", {
        **package, "version": version, "report_uri": report_uri,
        "accuracy": score(report.get("candidate")), "live_accuracy": score(report.get("baseline")),
        "live_error": (report.get("baseline") or {}).get("error"),
    })
