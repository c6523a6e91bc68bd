"""Backbone weights in a training job, as SageMaker runs a network-isolated one: an s3:// weights
file reaches the job as a channel and loads into the backbone; ``imagenet`` with nothing in the
job's torch cache fails at once with a FailureReason that says what to do (nothing is
downloaded). AWS: "Run Training and Inference Containers in Internet-Free Mode",
https://docs.aws.amazon.com/sagemaker/latest/dg/mkt-algo-model-internet-free.html."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from torchvision import models

from infra_scripts import packaging
from infra_scripts.localcloud.core.server import LocalCloud
from tests.localcloud.test_sagemaker_training import BUCKET, EXTENSION, read_model, start_job, wait_done
from training.dataset import make_dataset
from training.hpo import METRIC_DEFINITIONS

pytestmark = pytest.mark.parity
WEIGHTS_KEY = "backbones/resnet18-generated.pth"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    dataset = make_dataset(tmp_path_factory.mktemp("data"), classes=2, per_class=6, size=32, seed=0)
    with LocalCloud(extensions=[EXTENSION]) as running:
        s3 = running.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
            s3.upload_file(str(path), BUCKET, f"data/{path.relative_to(dataset).as_posix()}")
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=packaging.training_source())
        yield running


def script_mode(weights: str) -> dict[str, str]:
    return {"epochs": "1", "batch-size": "8", "image-size": "32", "arch": '"resnet18"',
            "weights": json.dumps(weights), "sagemaker_program": json.dumps(packaging.TRAINING_ENTRY),
            "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"'}


def test_an_s3_weights_file_arrives_as_a_channel_and_loads_into_the_backbone(cloud, tmp_path: Path):
    torch.manual_seed(11)
    generated = models.resnet18(weights=None).state_dict()
    buffer = io.BytesIO()
    torch.save(generated, buffer)
    cloud.boto3_client("s3").put_object(Bucket=BUCKET, Key=WEIGHTS_KEY, Body=buffer.getvalue())
    uri = f"s3://{BUCKET}/{WEIGHTS_KEY}"
    channels = [
        {"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data"}}},
        {"ChannelName": "weights", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}},
    ]
    sm = start_job(cloud, "weights-from-s3", script_mode(uri), InputDataConfig=channels,
                   AlgorithmSpecification={"TrainingImage": "pytorch", "TrainingInputMode": "File",
                                           "MetricDefinitions": METRIC_DEFINITIONS})
    described = wait_done(sm, "weights-from-s3", timeout_s=240)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    files = read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"])
    trained = torch.load(io.BytesIO(files["model.pth"]), weights_only=True)
    assert torch.equal(trained["layer3.0.conv1.weight"], generated["layer3.0.conv1.weight"])
    used = json.loads(files["hyperparameters.json"])["pretrained"]
    assert used.endswith("input/data/weights/resnet18-generated.pth")  # the channel's copy


def test_imagenet_with_an_empty_torch_cache_fails_fast_and_says_why(cloud, tmp_path: Path):
    sm = start_job(cloud, "weights-imagenet", script_mode("imagenet"),
                   Environment={"TORCH_HOME": str(tmp_path / "empty-torch-cache")})
    described = wait_done(sm, "weights-imagenet", timeout_s=120)
    assert described["TrainingJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "resnet18's ImageNet weights are not in the torch cache" in reason, reason
    assert "training.weights as an s3:// URI of the weights file, or none" in reason
    assert "Connection refused" in reason  # the isolated job could not reach the internet
