"""RegisterModel and EvaluationGate against moto: the package's contents, idempotency, and the
gate's decisions (first model, no regression, min_improvement, min_accuracy, unscorable live)."""

from __future__ import annotations

import json

import boto3
import pytest

from handlers import common, evaluation_gate, register_model
from handlers import registry as R
from handlers.errors import ModelRejected, TrainingFailed
from infra_scripts.packaging import tar_gz
from tests.handlers.conftest import CONFIG, REGION, call, call_twice

GROUP = CONFIG.model_package_group


def report(accuracy: float, live: float | None) -> dict:
    def one(acc: float) -> dict:
        return {"accuracy": acc, "num_images": 4,
                "per_class": {"a": {"precision": acc, "recall": acc, "support": 2},
                              "b": {"precision": acc, "recall": acc, "support": 2}},
                "confusion_matrix": {"classes": ["a", "b"], "matrix": [[2, 0], [0, 2]]}}
    return {"schema": "stepml.evaluation/1", "test_split": {"num_images": 4, "classes": ["a", "b"]},
            "candidate": one(accuracy), "baseline": None if live is None else one(live), "history": []}


def with_artifact(doc: dict, evaluation: dict | None) -> dict:
    files = {"model.pth": b"weights", "code/serve_entry.py": b"# serving"}
    if evaluation is not None:
        files["evaluation.json"] = json.dumps(evaluation).encode()
    bucket, key = common.split_s3_uri(doc["training_job"]["model_artifact"])
    common.client("s3").put_object(Bucket=bucket, Key=key, Body=tar_gz(files))
    return doc


@pytest.fixture
def group(aws, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MODEL_PACKAGE_GROUP", GROUP)
    monkeypatch.setenv("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
    return GROUP


def registered(trained: dict, accuracy: float = 0.9, live: float | None = None, **gate) -> dict:
    doc = with_artifact(trained, report(accuracy, live))
    doc = {**doc, "gate": {**doc["gate"], **gate}, "execution_arn": "arn:aws:states:x:1:execution:m:e"}
    return call(register_model, doc)


def test_register_model_writes_the_report_and_the_lineage(group: str, trained: dict) -> None:
    doc = registered(trained)
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=doc["model_package"]["arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == trained["training_job"]["model_artifact"]
    uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = common.split_s3_uri(uri)
    stored = json.loads(common.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["candidate"]["confusion_matrix"]["matrix"] == [[2, 0], [0, 2]]
    meta = package["CustomerMetadataProperties"]
    assert meta[R.RUN] == trained["run_id"]
    assert meta[R.DATASET] == trained["dataset"]["s3_uri"]
    assert meta[R.MANIFEST] == R.manifest_digest(trained["dataset"]["s3_uri"])[0]
    assert meta[R.EXECUTION] == "arn:aws:states:x:1:execution:m:e"
    assert meta[R.GIT_COMMIT] == "0123456789abcdef0123456789abcdef01234567"
    assert meta[R.TRAINING_JOB] == trained["training_job"]["arn"]
    assert json.loads(meta["hp:epochs"]) == trained["training"]["hyperparameters"]["epochs"]
    assert package["MetadataProperties"]["CommitId"] == meta[R.GIT_COMMIT]
    assert doc["model_package"]["accuracy"] == 0.9 and doc["model_package"]["live_accuracy"] is None


def test_the_manifest_digest_changes_with_any_object(group: str, trained: dict) -> None:
    before = R.manifest_digest(trained["dataset"]["s3_uri"])
    bucket, prefix = common.split_s3_uri(trained["dataset"]["s3_uri"])
    common.client("s3").put_object(Bucket=bucket, Key=f"{prefix}test/a/new.png", Body=b"x")
    after = R.manifest_digest(trained["dataset"]["s3_uri"])
    assert before != after and after[1] == before[1] + 1


def test_register_model_is_idempotent(group: str, trained: dict) -> None:
    doc = with_artifact(trained, report(0.9, None))
    first, second = call(register_model, doc), call_twice(register_model, doc)
    assert first["model_package"]["arn"] == second["model_package"]["arn"]
    listed = boto3.client("sagemaker", region_name=REGION).list_model_packages(ModelPackageGroupName=GROUP)
    assert len(listed["ModelPackageSummaryList"]) == 1


def test_an_artifact_without_a_report_fails_the_run(group: str, trained: dict) -> None:
    with pytest.raises(TrainingFailed, match="evaluation.json"):
        call(register_model, with_artifact(trained, None))


def status_of(doc: dict) -> tuple[str, str]:
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=doc["model_package"]["arn"])
    return package["ModelApprovalStatus"], package.get("ApprovalDescription", "")


def test_the_first_model_is_approved(group: str, trained: dict) -> None:
    doc = call(evaluation_gate, registered(trained))
    assert doc["gate_decision"]["decision"] == "Approved"
    assert status_of(doc)[0] == "Approved"


def test_a_tie_with_the_live_model_is_no_regression(group: str, trained: dict) -> None:
    doc = registered(trained, 0.9, live=0.9)
    doc["baseline"] = {"model_data": "s3://b/live/model.tar.gz"}
    assert call(evaluation_gate, doc)["gate_decision"]["decision"] == "Approved"


@pytest.mark.parametrize("accuracy, live, gate, reason", [
    (0.85, 0.9, {}, "< live model's 0.9000"),
    (0.92, 0.9, {"min_improvement": 0.05}, "+0.0500"),
    (0.7, None, {"min_accuracy": 0.8}, "below gate.min_accuracy"),
])
def test_the_gate_rejects(group: str, trained: dict, accuracy: float, live: float | None, gate: dict,
                          reason: str) -> None:
    doc = registered(trained, accuracy, live, **gate)
    if live is not None:
        doc["baseline"] = {"model_data": "s3://b/live/model.tar.gz"}
    with pytest.raises(ModelRejected) as raised:
        call(evaluation_gate, doc)
    cause = json.loads(str(raised.value))
    assert reason in cause["reason"]
    assert (cause["candidate_accuracy"], cause["live_accuracy"]) == (accuracy, live)
    status, description = status_of(doc)
    assert status == "Rejected" and reason in description


def test_a_live_model_that_could_not_be_scored_is_never_replaced_blind(group: str, trained: dict) -> None:
    doc = registered(trained, 0.99, None)
    doc["baseline"] = {"model_data": "s3://b/live/model.tar.gz"}
    with pytest.raises(ModelRejected, match="could not be evaluated"):
        call(evaluation_gate, doc)


def test_update_metadata_keeps_the_other_entries(group: str, trained: dict) -> None:
    doc = registered(trained)
    R.update_metadata(doc["model_package"]["arn"], {R.ROLLOUT: "Live"})
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=doc["model_package"]["arn"])
    assert package["CustomerMetadataProperties"][R.ROLLOUT] == "Live"
    assert package["CustomerMetadataProperties"][R.RUN] == trained["run_id"]
