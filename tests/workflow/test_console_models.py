"""`stepml console`'s ML side: the registry table, one version's report, training curves, the live
endpoint and predictions, against the local cloud with data made through the AWS APIs.

The stack (``ml_stack``, shared with the browser test): a model package group of four versions
(Superseded, Live, gate-Rejected, RolledBack) with lineage metadata and evaluation reports in S3;
a SageMaker training job with MetricDefinitions whose log stream holds per-epoch lines; an
endpoint serving the live version's model data, scaled 1 → 2 by Application Auto Scaling; and
the predict function: the real ``handlers.predict`` handler (its zip and dependencies layer, as
deploy builds them) behind a ``live`` alias, calling the endpoint through sagemaker-runtime.
The endpoint's model server is a stand-in (stdlib, below): the real PyTorch container would need
a trained model and a minute to start, and the console never sees the difference.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handlers import registry as R
from infra_scripts.console.server import (
    ApiError,
    ConsoleApi,
    ConsoleServer,
    curves_from_logs,
    instances_over_time,
)
from infra_scripts.executions import Clients
from infra_scripts.packaging import handler_dependencies_layer, handlers_zip, tar_gz
from statemachine.config import PipelineConfig
from tests.roles import TEST_ACCESS, service_role
from tests.workflow.test_console import call
from training.hpo import METRIC_DEFINITIONS

# Its own names: the package's cloud is shared with the other workflow tests.
CONFIG = PipelineConfig(prefix="mlcon", bucket="mlcon-artifacts", endpoint_name="mlcon-endpoint")
CLASSES = ["cat", "dog", "fox", "owl"]
JOB = "mlcon-train-v2"  # the live version's SageMaker job: its curves come from its logs
LOG_GROUP, STREAM = "/aws/sagemaker/TrainingJobs", f"{JOB}/algo-1-1700000000"
EC2_JOB = "i-0123456789abcdef0"  # v1 trained on EC2: no job logs, its curves are the report's
LOGGED = [(1, 1.25, 1.1, 0.5), (2, 0.8, 0.9, 0.625), (3, 0.5, 0.7, 0.875)]  # epoch, train/valid loss, acc
V1_HISTORY = [{"epoch": 1, "train_loss": 1.5, "valid_loss": 1.4, "valid_acc": 0.4},
              {"epoch": 2, "train_loss": 1.0, "valid_loss": 1.2, "valid_acc": 0.7}]
ROLLBACK_REASON = "rolled back: alarm mlcon-endpoint-new-fleet-5xx went to ALARM during the canary"
REJECT_REASON = "test accuracy 0.8500 < live 0.9000 + min_improvement 0.0000"

# A model server with SageMaker's hosting contract (GET /ping, POST /invocations): {"image":
# base64} of a PNG → the top 5 of classes.json, probabilities derived from the image's sha256
# (deterministic); anything else → 400/415 JSON, as the real container refuses bad input.
MODEL_SERVER = r'''
import argparse, base64, binascii, hashlib, json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args = parser.parse_args()
classes = json.loads((Path(args.model) / "classes.json").read_text())


def predictions(image):
    digest = hashlib.sha256(image).digest()
    weights = [digest[i] + 1 for i in range(len(classes))]
    ranked = sorted(range(len(classes)), key=lambda i: (-weights[i], i))[:5]
    return [{"label": classes[i], "index": i, "probability": round(weights[i] / sum(weights), 6)}
            for i in ranked]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200 if self.path == "/ping" else 404, {})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            image = base64.b64decode(json.loads(body)["image"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return self._send(400, {"error": "InvalidImage", "message": "expected base64 image"})
        if not image.startswith(b"\x89PNG"):
            return self._send(415, {"error": "UnsupportedImage", "message": "not a PNG image"})
        self._send(200, {"predictions": predictions(image), "model": {"arch": "standin"}})


ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
'''


@dataclass
class Stack:
    config: PipelineConfig
    clients: Clients
    arns: dict[int, str]  # version → package ARN


_STACKS: dict[str, Stack] = {}  # per cloud: this module and the browser test build it once


def ml_stack(cloud: Any, tmp_dir: Path) -> Stack:
    if cloud.url not in _STACKS:
        arns = _registry(cloud)
        _training_job(cloud)
        _endpoint(cloud, tmp_dir)
        _predict_function(cloud)
        _STACKS[cloud.url] = Stack(CONFIG, Clients(cloud.region, cloud.url), arns)
    return _STACKS[cloud.url]


# -- the registry -------------------------------------------------------------------------------
def _report(accuracy: float, baseline: float | None, history: list[dict]) -> dict:
    per_class = {name: {"precision": 0.5 + i / 10, "recall": 0.9 - i / 10, "support": 10 + i}
                 for i, name in enumerate(CLASSES)}
    matrix = [[10 if i == j else i + j for j in range(len(CLASSES))] for i in range(len(CLASSES))]
    return {"schema": "stepml.evaluation/1", "test_split": {"images": 46, "uri": "s3://mlcon/test/"},
            "candidate": {"accuracy": accuracy, "num_images": 46, "per_class": per_class,
                          "confusion_matrix": {"classes": CLASSES, "matrix": matrix}},
            "baseline": {"accuracy": baseline, "num_images": 46} if baseline is not None else None,
            "history": history}


def _logged_history() -> list[dict]:
    return [{"epoch": e, "train_loss": t, "valid_loss": v, "valid_acc": a} for e, t, v, a in LOGGED]


# version: (training job, accuracy, live accuracy, status, approval description, decision, rollout)
VERSIONS = {
    1: (EC2_JOB, 0.8, None, "Approved", "first model: no live model to compare", "Approved", "Superseded"),
    2: (f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}", 0.9, 0.8, "Approved",
        "test accuracy 0.9000 >= live 0.8000 + min_improvement 0.0000", "Approved", "Live"),
    3: ("arn:aws:sagemaker:us-east-1:123456789012:training-job/mlcon-train-v3", 0.85, 0.9, "Rejected",
        REJECT_REASON, "Rejected", ""),
    4: ("arn:aws:sagemaker:us-east-1:123456789012:training-job/mlcon-train-v4", 0.93, 0.9, "Rejected",
        ROLLBACK_REASON, "Approved", "RolledBack"),
}


def model_data(version: int) -> str:
    return f"s3://{CONFIG.bucket}/models/run-{version}/model.tar.gz"


def _metadata(version: int) -> dict[str, str]:
    job, accuracy, live, _status, description, decision, rollout = VERSIONS[version]
    values = {R.RUN: f"run-{version}", R.DATASET: f"s3://{CONFIG.bucket}/datasets/flowers/",
              R.MANIFEST: hashlib.sha256(b"manifest").hexdigest(), R.TRAINING_JOB: job,
              R.TRAINING_CODE: "ab12cd34ef56ab78", R.INFERENCE_CODE: "0011223344556677",
              R.EXECUTION: f"arn:aws:states:us-east-1:123456789012:execution:mlcon-pipeline:run-{version}",
              R.GIT_COMMIT: f"{version}" * 7, R.ACCURACY: f"{accuracy:.6f}", R.DECISION: decision,
              R.REASON: description if decision == "Rejected" else "gate passed",
              "hp:epochs": "3", "hp:lr": json.dumps(0.01 * version), "hp:arch": '"resnet18"'}
    if live is not None:
        values[R.LIVE_ACCURACY] = f"{live:.6f}"
    if rollout:
        values[R.ROLLOUT] = rollout
    return values


def _registry(cloud: Any) -> dict[int, str]:
    s3, sagemaker = cloud.boto3_client("s3"), cloud.boto3_client("sagemaker")
    s3.create_bucket(Bucket=CONFIG.bucket)
    sagemaker.create_model_package_group(ModelPackageGroupName=CONFIG.model_package_group)
    arns = {}
    for version, (_job, accuracy, live, status, description, _d, _r) in VERSIONS.items():
        history = V1_HISTORY if version == 1 else _logged_history()
        key = f"models/run-{version}/evaluation.json"
        s3.put_object(Bucket=CONFIG.bucket, Key=key, Body=json.dumps(_report(accuracy, live, history)))
        arn = sagemaker.create_model_package(
            ModelPackageGroupName=CONFIG.model_package_group, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={"Containers": [{"Image": "local/stepml-inference",
                                                    "ModelDataUrl": model_data(version)}],
                                    "SupportedContentTypes": ["image/png"],
                                    "SupportedResponseMIMETypes": ["application/json"]},
            ModelMetrics={"ModelQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": f"s3://{CONFIG.bucket}/{key}"}}},
            CustomerMetadataProperties=_metadata(version))["ModelPackageArn"]
        # as the gate does: status and reason after registering (all entries sent: moto replaces them)
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status,
                                       ApprovalDescription=description,
                                       CustomerMetadataProperties=_metadata(version))
        arns[version] = arn
    return arns


# -- the training job and its logs --------------------------------------------------------------
def _training_job(cloud: Any) -> None:
    """A job with the pipeline's MetricDefinitions; its data channel is empty, so the local cloud
    fails it while downloading, before anything runs or logs (``training_logs`` writes its lines)."""
    sagemaker = cloud.boto3_client("sagemaker")
    sagemaker.create_training_job(
        TrainingJobName=JOB, RoleArn=service_role(cloud, "mlcon-training", "sagemaker.amazonaws.com"),
        AlgorithmSpecification={"TrainingImage": "local/stepml-training", "TrainingInputMode": "File",
                                "MetricDefinitions": METRIC_DEFINITIONS},
        InputDataConfig=[{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{CONFIG.bucket}/empty/"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{CONFIG.bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60})


@contextmanager
def training_logs(cloud: Any) -> Iterator[None]:
    """The job's log stream, as its host would write it, for the length of a module; what it made
    goes again after (other tests of the package create the log group themselves)."""
    logs = cloud.boto3_client("logs")
    found = logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]
    made_group = LOG_GROUP not in [group["logGroupName"] for group in found]
    if made_group:
        logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=STREAM)
    lines = ["Invoking script with the following command: train_entry.py --epochs 3",
             *(f"epoch={e} train_loss={t} valid_loss={v} valid_acc={a} seconds=1.5" for e, t, v, a in LOGGED),
             "best_epoch=3 best_valid_loss=0.7 best_valid_acc=0.875", "test_loss=0.65 test_acc=0.9"]
    now_ms = int(time.time() * 1000)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=STREAM, logEvents=[
        {"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)])
    try:
        yield
    finally:
        if made_group:
            logs.delete_log_group(logGroupName=LOG_GROUP)
        else:
            logs.delete_log_stream(logGroupName=LOG_GROUP, logStreamName=STREAM)


# -- the endpoint, scaled out once ---------------------------------------------------------------
def _endpoint(cloud: Any, tmp_dir: Path) -> None:
    script = tmp_dir / "model_server.py"
    script.write_text(MODEL_SERVER)
    options = cloud.settings.options.setdefault("sagemaker_endpoints", {})
    saved = dict(options)
    # The stand-in serves the instances started while it is set (launch and scale-out below).
    options.update(server_command=[sys.executable, str(script), "--model", "{model}", "--port", "{port}",
                                   "--host", "{host}"], startup_timeout_s=30)
    try:
        _create_endpoint(cloud)
        _scale_out(cloud)
    finally:
        options.clear()
        options.update(saved)


def _create_endpoint(cloud: Any) -> None:
    s3, sagemaker = cloud.boto3_client("s3"), cloud.boto3_client("sagemaker")
    bucket, key = model_data(2)[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=tar_gz({"classes.json": json.dumps(CLASSES).encode()}))
    sagemaker.create_model(ModelName="mlcon-model-v2", PrimaryContainer={
        "Image": "local/stepml-inference", "ModelDataUrl": model_data(2)},
        ExecutionRoleArn=service_role(cloud, "mlcon-model", "sagemaker.amazonaws.com"))
    sagemaker.create_endpoint_config(EndpointConfigName="mlcon-config-v2", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "mlcon-model-v2", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=CONFIG.endpoint_name, EndpointConfigName="mlcon-config-v2")
    wait_endpoint(cloud, instances=1)


def _scale_out(cloud: Any) -> None:
    """A scalable target whose minimum is above the current count: the controller's next
    evaluation sets it, one Successful scaling activity (evaluated here, not on its clock)."""
    cloud.boto3_client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{CONFIG.endpoint_name}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=2, MaxCapacity=2)
    controller = cloud.extensions["autoscaling.controller"]
    controller.evaluate()
    wait_endpoint(cloud, instances=2)
    deadline = time.monotonic() + 60
    while any(a.status_code == "InProgress" for a in controller.activities) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_endpoint(cloud: Any, instances: int, timeout_s: float = 90) -> dict:
    sagemaker, deadline = cloud.boto3_client("sagemaker"), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sagemaker.describe_endpoint(EndpointName=CONFIG.endpoint_name)
        variant = (described.get("ProductionVariants") or [{}])[0]
        if described["EndpointStatus"] == "Failed":
            raise AssertionError(described.get("FailureReason"))
        if described["EndpointStatus"] == "InService" and variant.get("CurrentInstanceCount") == instances:
            return described
        time.sleep(0.1)
    raise AssertionError(f"{CONFIG.endpoint_name} not InService with {instances} instances: {described}")


# -- the predict function --------------------------------------------------------------------------
def _predict_function(cloud: Any) -> None:
    """handlers.predict as deploy ships it: the handlers zip, the dependencies layer (Powertools),
    ENDPOINT_NAME; a role that may invoke the endpoint; version 1 behind the ``live`` alias."""
    client = cloud.boto3_client("lambda")
    policy = {"Version": "2012-10-17", "Statement": [*TEST_ACCESS["Statement"], {
        "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": "*"}]}
    layer = client.publish_layer_version(LayerName="mlcon-handler-deps", CompatibleRuntimes=["python3.11"],
                                         Content={"ZipFile": handler_dependencies_layer()})
    client.create_function(
        FunctionName=CONFIG.function_name("predict"), Runtime="python3.11",
        Handler="handlers.predict.handler",
        Role=service_role(cloud, "mlcon-predict", "lambda.amazonaws.com", policy), Timeout=30,
        Code={"ZipFile": handlers_zip()}, Layers=[layer["LayerVersionArn"]],
        Environment={"Variables": {"ENDPOINT_NAME": CONFIG.endpoint_name, "POWERTOOLS_LOG_LEVEL": "WARNING"}})
    version = client.publish_version(FunctionName=CONFIG.function_name("predict"))["Version"]
    client.create_alias(FunctionName=CONFIG.function_name("predict"), Name="live", FunctionVersion=version)


def png(color: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(out, "PNG")
    return out.getvalue()


def expected_predictions(image: bytes, top_k: int) -> list[dict]:
    """What the stand-in model server answers for ``image`` (its formula, restated)."""
    digest = hashlib.sha256(image).digest()
    weights = [digest[i] + 1 for i in range(len(CLASSES))]
    ranked = sorted(range(len(CLASSES)), key=lambda i: (-weights[i], i))[:top_k]
    return [{"label": CLASSES[i], "index": i, "probability": round(weights[i] / sum(weights), 6)}
            for i in ranked]


# -- tests ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(cloud, tmp_path_factory) -> Iterator[Stack]:
    with training_logs(cloud):
        yield ml_stack(cloud, tmp_path_factory.mktemp("ml-stack"))


@pytest.fixture(scope="module")
def api(stack) -> ConsoleApi:
    return ConsoleApi(stack.clients, stack.config)


@pytest.fixture(scope="module")
def console(stack):
    server = ConsoleServer(stack.clients, config=stack.config).start()
    yield server
    server.stop()


def test_registry_table(api, stack):
    answer = api.models()
    assert answer["group"] == "mlcon-models" and answer["endpoint"] == "mlcon-endpoint"
    rows = {row["version"]: row for row in answer["versions"]}
    assert [row["version"] for row in answer["versions"]] == [4, 3, 2, 1]  # newest first
    assert [v for v, row in rows.items() if row["live"]] == [2]
    assert rows[2]["rollout"] == "Live" and rows[1]["rollout"] == "Superseded"
    assert rows[4]["rollout"] == "RolledBack" and rows[4]["status"] == "Rejected"
    rejected = rows[3]
    assert (rejected["status"], rejected["decision"], rejected["reason"]) == ("Rejected", "Rejected",
                                                                              REJECT_REASON)
    assert rows[4]["decision"] == "Approved" and rows[4]["reason"] == ROLLBACK_REASON
    assert (rows[2]["accuracy"], rows[2]["live_accuracy"], rows[1]["live_accuracy"]) == (0.9, 0.8, None)
    assert rows[2]["training_job"] == JOB and rows[1]["training_job"] == EC2_JOB
    assert rows[2]["lineage"]["dataset-uri"] == f"s3://{CONFIG.bucket}/datasets/flowers/"
    assert rows[2]["lineage"]["git-commit"] == "2222222"
    assert rows[2]["hyperparameters"] == {"epochs": 3, "lr": 0.02, "arch": "resnet18"}
    assert rows[2]["arn"] == stack.arns[2] and rows[2]["model_data"] == model_data(2)


def test_one_version_with_its_report(api):
    answer = api.model("3")
    assert answer["version"]["version"] == 3 and answer["reportError"] is None
    candidate = answer["report"]["candidate"]
    assert candidate["per_class"]["dog"] == {"precision": 0.6, "recall": 0.8, "support": 11}
    assert candidate["confusion_matrix"]["classes"] == CLASSES
    assert candidate["confusion_matrix"]["matrix"][1] == [1, 10, 3, 4]
    assert answer["report"]["baseline"]["accuracy"] == 0.9
    assert [row["epoch"] for row in answer["report"]["history"]] == [1, 2, 3]


def test_training_curves_from_the_jobs_logs(api):
    answer = api.training_curves(JOB)
    assert answer["source"] == "logs" and answer["epochs"] == [1, 2, 3]
    assert answer["series"]["train_loss"] == [t for _e, t, _v, _a in LOGGED]
    assert answer["series"]["valid_loss"] == [v for _e, _t, v, _a in LOGGED]
    assert answer["series"]["valid_acc"] == [a for _e, _t, _v, a in LOGGED]
    assert list(answer["series"]) == ["train_loss", "valid_loss", "valid_acc"]
    assert answer["summary"] == {"best_valid_loss": 0.7, "best_valid_acc": 0.875, "test_loss": 0.65,
                                 "test_acc": 0.9}


def test_training_curves_fall_back_to_the_report_without_job_logs(api):
    answer = api.training_curves(EC2_JOB)  # an EC2 run: no SageMaker job, no job logs
    assert answer["source"] == "report" and answer["epochs"] == [1, 2]
    assert answer["series"]["valid_acc"] == [0.4, 0.7] and answer["summary"] == {}


def test_curves_parse_with_the_jobs_definitions_only():
    lines = ["epoch=1 train_loss=2.0 valid_loss=1.0 valid_acc=0.25", "noise valid_acc=9",
             "best_epoch=1 best_valid_acc=0.25", "epoch=2 train_loss=1.5 valid_loss=nan? valid_acc=0.5"]
    definitions = [{"Name": "train_loss", "Regex": r"\btrain_loss=([0-9.eE+-]+)"},
                   {"Name": "valid_acc", "Regex": r"\bvalid_acc=([0-9.eE+-]+)"},
                   {"Name": "broken", "Regex": "("}]
    answer = curves_from_logs(lines, definitions)
    assert answer["epochs"] == [1, 2]
    assert answer["series"] == {"train_loss": [2.0, 1.5], "valid_acc": [0.25, 0.5]}
    assert answer["summary"] == {"valid_acc": 9.0}  # best_valid_acc is not valid_acc (\b)


def test_endpoint_panel(api, stack, cloud):
    before = api.endpoint()
    runtime = cloud.boto3_client("sagemaker-runtime")
    for color in ((1, 2, 3), (4, 5, 6), (7, 8, 9)):
        runtime.invoke_endpoint(EndpointName=CONFIG.endpoint_name, ContentType="application/json",
                                Body=json.dumps({"image": base64.b64encode(png(color)).decode()}))
    answer = api.endpoint()
    assert answer["exists"] and answer["status"] == "InService" and answer["config"] == "mlcon-config-v2"
    assert (answer["instances"], answer["instanceType"]) == (2, "ml.m5.large")
    assert answer["variant"] == "AllTraffic"
    assert answer["scalableTarget"] == {"min": 2, "max": 2}
    assert len(answer["invocationsPerMinute"]) == 60
    total = sum(p["value"] for p in answer["invocationsPerMinute"])
    assert total - sum(p["value"] for p in before["invocationsPerMinute"]) == 3
    assert [p["count"] for p in answer["instancesOverTime"]] == [1, 2, 2]
    [activity] = answer["activities"]
    assert (activity["status"], activity["desired"]) == ("Successful", 2)
    assert "minimum capacity was set to 2" in activity["cause"]
    assert answer["instancesOverTime"][1]["time"] == activity["end"]


def test_instances_over_time_starts_from_the_last_activity_before_the_window():
    from datetime import UTC, datetime, timedelta

    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    since = now - timedelta(hours=1)
    activities = [{"status": "Successful", "desired": 3, "time": since - timedelta(minutes=5), "end": None},
                  {"status": "Failed", "desired": 5, "time": now - timedelta(minutes=30), "end": None},
                  {"status": "Successful", "desired": 2, "time": now - timedelta(minutes=10),
                   "end": now - timedelta(minutes=9)}]
    points = instances_over_time(activities, 1, 2, since, now)
    assert [(p["time"], p["count"]) for p in points] == [
        (since, 3), (now - timedelta(minutes=9), 2), (now, 2)]
    assert [p["count"] for p in instances_over_time([], 1, 1, since, now)] == [1, 1]


def test_predict_through_the_live_alias(api):
    image = png()
    answer = api.predict({"image": base64.b64encode(image).decode(), "top_k": 3})
    assert answer["function"] == "mlcon-predict" and answer["qualifier"] == "live"
    assert answer["executedVersion"] == "1" and answer["topK"] == 3
    assert answer["predictions"] == expected_predictions(image, 3)
    assert answer["model"] == {"arch": "standin"}


def test_predict_errors_are_the_functions_4xx(api):
    with pytest.raises(ApiError) as caught:  # the handler's own refusal
        api.predict({"image": "   "})
    assert (caught.value.status, caught.value.code) == (400, "InvalidField")
    with pytest.raises(ApiError) as caught:  # the model's 400
        api.predict({"image": "not base64!"})
    assert (caught.value.status, caught.value.code) == (400, "InvalidImage")
    with pytest.raises(ApiError) as caught:  # the model's 4xx, passed through by the handler
        api.predict({"image": base64.b64encode(b"GIF89a").decode()})
    assert (caught.value.status, caught.value.code) == (415, "UnsupportedImage")


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/api/training-curves?job=bad_name!", None, 400, "InvalidParameter"),
    ("/api/training-curves?job=" + "a" * 64, None, 400, "InvalidParameter"),
    ("/api/training-curves?job=mlcon-train-v2%0A", None, 400, "InvalidParameter"),
    ("/api/models/2x", None, 400, "InvalidParameter"),
    ("/api/training-curves", None, 400, "MissingParameter"),
    ("/api/training-curves?job=no-such-job", None, 404, "TrainingJobNotFound"),
    ("/api/models/zero", None, 400, "InvalidParameter"),
    ("/api/models/0", None, 400, "InvalidParameter"),
    ("/api/models/99", None, 404, "ModelVersionNotFound"),
    ("/api/predict", b"{not json", 400, "InvalidJSON"),
    ("/api/predict", b"{}", 400, "MissingParameter"),
    ("/api/predict", json.dumps({"image": 42}).encode(), 400, "InvalidParameter"),
    ("/api/predict", json.dumps({"image": "aGk=", "top_k": 0}).encode(), 400, "InvalidParameter"),
    ("/api/predict", json.dumps({"image": "aGk=", "top_k": True}).encode(), 400, "InvalidParameter"),
    # extra keys change nothing: the function is the config's, and "hi" is no PNG to the model
    ("/api/predict", json.dumps({"image": "aGk=", "functionName": "mlcon-other"}).encode(), 415,
     "UnsupportedImage"),
])
def test_bad_requests_get_4xx_json(console, path, body, status, code):
    answered, payload = call(console, path, body)
    assert (answered, payload["error"]) == (status, code), payload
    assert "Traceback" not in payload["message"]


def test_predict_body_over_the_lambda_payload_limit_is_refused(console):
    body = json.dumps({"image": "A" * (6 * 1024 * 1024)}).encode()
    answered, payload = call(console, "/api/predict", body)
    assert (answered, payload["error"]) == (413, "PayloadTooLarge")


def test_predict_and_models_over_http_need_the_token(console):
    image = base64.b64encode(png()).decode()
    answered, payload = call(console, "/api/predict", json.dumps({"image": image, "top_k": 2}).encode())
    assert answered == 200 and [p["label"] for p in payload["predictions"]] == [
        p["label"] for p in expected_predictions(png(), 2)]
    for path in ("/api/models", "/api/models/2", "/api/endpoint", f"/api/training-curves?job={JOB}"):
        assert call(console, path)[0] == 200
        assert call(console, path, **{"X-Stepml-Token": "guess"})[0] == 403
    assert call(console, "/api/predict", b"{}", **{"X-Stepml-Token": None})[0] == 403


def test_missing_group_endpoint_and_function_give_empty_answers(cloud):
    other = ConsoleApi(Clients(cloud.region, cloud.url),
                       PipelineConfig(prefix="mlnone", endpoint_name="mlnone-endpoint"))
    assert other.models() == {"group": "mlnone-models", "endpoint": "mlnone-endpoint", "versions": []}
    answer = other.endpoint()
    assert answer["exists"] is False and answer["invocationsPerMinute"] == [] and answer["activities"] == []
    with pytest.raises(ApiError) as caught:
        other.model("1")
    assert caught.value.status == 404
    with pytest.raises(ClientError) as missing:  # no such function: Lambda's 404 (404 over HTTP)
        other.predict({"image": "aGk="})
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
