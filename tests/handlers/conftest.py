"""moto-backed fixtures for the state handlers: the deploy-time environment, a bucket with the
training request template and a small dataset, a fake Lambda context, and resource counters."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import io
import json
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from handlers import common
from infra_scripts.localcloud.ec2.images import install_public_dlamis
from statemachine.config import PipelineConfig

REGION = "us-east-1"
CONFIG = PipelineConfig()
BUCKET = CONFIG.bucket
DATASET_URI = f"s3://{BUCKET}/datasets/sample/"
TRAINING_REQUEST_URI = f"s3://{BUCKET}/{CONFIG.training_request_key}"
SAGEMAKER_ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/stepml-sagemaker"
INFERENCE_IMAGE_URI = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
INFERENCE_SOURCE_URI = f"s3://{BUCKET}/stepml/code/inference/sourcedir.tar.gz"
EC2_CODE_URI = f"s3://{BUCKET}/stepml/code/training.tar.gz"
EC2_INSTANCE_PROFILE = "stepml-ec2-training"
PREDICT_FUNCTION = "stepml-predict"
EXECUTION_NAME = "exec-1"
CLASSES = ("cat", "dog")
IMAGES_PER_CLASS = 1  # each S3 call costs ~10 ms in moto, and every test uploads the dataset

# Shaped like sagemaker.workflow.airflow.training_config(estimator, ...) for a PyTorch estimator.
TRAINING_TEMPLATE: dict[str, Any] = {
    "TrainingJobName": "training-template",
    "AlgorithmSpecification": {
        "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
        "TrainingInputMode": "File",
        "MetricDefinitions": [{"Name": "valid_acc", "Regex": r"valid_acc=([0-9.]+)"}],
    },
    "RoleArn": SAGEMAKER_ROLE_ARN,
    "HyperParameters": {
        "sagemaker_program": json.dumps("train_entry.py"),
        "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/stepml/code/sourcedir.tar.gz"),
        "sagemaker_container_log_level": "20",
        "sagemaker_region": json.dumps(REGION),
    },
    "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/datasets/",
        "S3DataDistributionType": "FullyReplicated"}}}],
    "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
    "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.c5.xlarge", "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
    "S3Operations": {"S3Upload": [{"Path": "/tmp/source", "Bucket": BUCKET,
                                   "Key": "stepml/code/sourcedir.tar.gz", "Tar": True}]},
}


@dataclass
class FakeLambdaContext:
    """What Powertools' inject_lambda_context reads from a Lambda context."""

    function_name: str = "stepml-test-handler"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:"
                                 "function:stepml-test-handler")
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


def call(module: ModuleType, event: dict) -> dict:
    """Invoke a handler as Lambda would: a fresh copy of the event and a context."""
    return module.handler(copy.deepcopy(event), FakeLambdaContext())


def call_twice(module: ModuleType, event: dict) -> dict:
    """Retry/redrive: the same input twice must give the same document."""
    first = call(module, event)
    second = call(module, event)
    assert second == first
    return first


def freeze_time(monkeypatch: pytest.MonkeyPatch, module: ModuleType, now: float) -> None:
    """Pin ``time.time()`` as seen by one handler module (``started_at`` stamps)."""
    monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: now))


def run_input(**overrides: Any) -> dict:
    """ValidateInput's event: the execution input plus the execution name."""
    given: dict[str, Any] = {"dataset": DATASET_URI, "poll_seconds": 0,
                             "training": {"hyperparameters": {"epochs": 2}}}
    given.update(overrides)
    return {"input": given, "execution_name": EXECUTION_NAME}


def dataset_keys(split: str) -> list[str]:
    """The sample dataset's object keys under one split (train, valid or test)."""
    _, prefix = common.split_s3_uri(DATASET_URI)
    return [f"{prefix}{split}/{label}/{index}.png" for label in CLASSES for index in range(IMAGES_PER_CLASS)]


def sagemaker_backend() -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


class Counts:
    """How many of each resource exist in moto right now."""

    def __init__(self) -> None:
        self.sagemaker = common.client("sagemaker")

    def training_jobs(self) -> int:
        return len(self.sagemaker.list_training_jobs()["TrainingJobSummaries"])

    def tuning_jobs(self) -> int:
        return len(self.sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"])

    def models(self) -> int:
        return len(self.sagemaker.list_models()["Models"])

    def endpoint_configs(self) -> int:
        return len(self.sagemaker.list_endpoint_configs()["EndpointConfigs"])

    def endpoints(self) -> int:
        return len(self.sagemaker.list_endpoints()["Endpoints"])

    def live_instances(self) -> list[dict]:
        reservations = common.client("ec2").describe_instances(Filters=[
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ])["Reservations"]
        return [i for r in reservations for i in r["Instances"]]

    def objects(self) -> int:
        return common.client("s3").list_objects_v2(Bucket=BUCKET)["KeyCount"]


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session for every test: its loader keeps the parsed service models (seconds each on
    this machine) instead of re-reading them after mock_aws resets boto3's default session."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, boto_session: boto3.Session) -> Iterator[Counts]:
    """moto for every service, the handlers' deploy-time environment, a fresh client cache, and
    a bucket holding the training request template and a two-class dataset."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "EC2_AMI_ID", "INFERENCE_PROGRAM"):
        monkeypatch.delenv(name, raising=False)
    environment = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "EXECUTION_DEFAULTS": json.dumps(CONFIG.execution_defaults()),
        "TRAINING_REQUEST_URI": TRAINING_REQUEST_URI,
        "SAGEMAKER_ROLE_ARN": SAGEMAKER_ROLE_ARN,
        "INFERENCE_IMAGE_URI": INFERENCE_IMAGE_URI,
        "INFERENCE_SOURCE_URI": INFERENCE_SOURCE_URI,
        "EC2_CODE_URI": EC2_CODE_URI,
        "EC2_INSTANCE_PROFILE": EC2_INSTANCE_PROFILE,
        "EC2_AMI_PARAMETER": CONFIG.ec2_ami_parameter,
        "EC2_ROOT_VOLUME_GB": str(CONFIG.ec2_root_volume_gb),
        "PREDICT_FUNCTION_NAME": PREDICT_FUNCTION,
        "POWERTOOLS_SERVICE_NAME": "stepml-test",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # ~2 s per test otherwise; AMI ids aren't checked
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    common._clients.clear()
    install_public_dlamis(monkeypatch.setattr)  # moto has no /aws/service/deeplearning/ parameters
    with mock_aws():
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto_session)
        s3 = common.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        bucket, key = common.split_s3_uri(TRAINING_REQUEST_URI)
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(TRAINING_TEMPLATE).encode())
        for split in ("train", "valid", "test"):
            for key in dataset_keys(split):
                s3.put_object(Bucket=BUCKET, Key=key, Body=f"image bytes of {key}".encode())
        yield Counts()
    common._clients.clear()


@pytest.fixture
def validated(aws: Counts) -> dict:
    """The execution document after ValidateInput (default backend: sagemaker)."""
    from handlers import validate_input

    return call(validate_input, run_input())


@pytest.fixture
def trained(validated: dict) -> dict:
    """After StartSageMakerTraining and CheckTraining (moto's jobs complete at once)."""
    from handlers import check_training, start_sagemaker_training

    doc = call(check_training, call(start_sagemaker_training, validated))
    assert doc["training_job"]["status"] == "Completed"
    return doc


@pytest.fixture
def deployed(trained: dict) -> dict:
    """After CreateModel, CreateEndpointConfig and DeployEndpoint (endpoint not yet checked)."""
    from handlers import create_endpoint_config, create_model, deploy_endpoint

    return call(deploy_endpoint, call(create_endpoint_config, call(create_model, trained)))


@pytest.fixture
def serving(deployed: dict) -> dict:
    """After CheckEndpoint saw the endpoint InService (moto's endpoints are at once)."""
    from handlers import check_endpoint

    doc = call(check_endpoint, deployed)
    assert doc["endpoint"]["status"] == "InService"
    return doc


@pytest.fixture
def predict_function(aws: Counts) -> str:
    """The predict Lambda as deploy creates it (no version, no alias yet)."""
    iam = common.client("iam")
    role = iam.create_role(RoleName="stepml-predict", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    common.client("lambda").create_function(
        FunctionName=PREDICT_FUNCTION, Runtime="python3.11", Role=role,
        Handler="handlers.predict.handler", Code={"ZipFile": zipped({"app.py": "x = 1\n"})},
        Environment={"Variables": {"ENDPOINT_NAME": "stepml-old", "POWERTOOLS_SERVICE_NAME": "p"}},
    )
    return PREDICT_FUNCTION


@pytest.fixture
def start_ec2_training(aws: Counts) -> Iterator[ModuleType]:
    """handlers.start_ec2_training with the instance profile it names in place."""
    iam = common.client("iam")
    iam.create_role(RoleName=EC2_INSTANCE_PROFILE, AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=EC2_INSTANCE_PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=EC2_INSTANCE_PROFILE,
                                     RoleName=EC2_INSTANCE_PROFILE)
    yield importlib.import_module("handlers.start_ec2_training")
