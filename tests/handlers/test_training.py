"""Tune, CheckTuning, StartSageMakerTraining, StartEC2Training and CheckTraining against moto."""

from __future__ import annotations

import base64
import json
import re
import time
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handlers import check_training, check_tuning, common, start_sagemaker_training, tune, validate_input
from handlers.errors import TrainingFailed, TrainingTimedOut, TuningFailed
from tests.handlers.conftest import (
    BUCKET,
    CONFIG,
    DATASET_URI,
    EC2_CODE_URI,
    EC2_INSTANCE_PROFILE,
    SAGEMAKER_ROLE_ARN,
    TRAINING_TEMPLATE,
    Counts,
    call,
    call_twice,
    freeze_time,
    run_input,
    sagemaker_backend,
)

NOW = 1_800_000_000.0


def describe_job(name: str) -> dict:
    return common.client("sagemaker").describe_training_job(TrainingJobName=name)


# -- StartSageMakerTraining ------------------------------------------------------------------

def test_start_sagemaker_training(validated: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, start_sagemaker_training, NOW)
    doc = call(start_sagemaker_training, validated)

    name = validated["run_id"]
    assert doc["training_job"] == {"backend": "sagemaker", "name": name, "status": "InProgress",
                                   "started_at": NOW}
    job = describe_job(name)
    template = TRAINING_TEMPLATE
    image = template["AlgorithmSpecification"]["TrainingImage"]
    assert job["AlgorithmSpecification"]["TrainingImage"] == image
    assert job["RoleArn"] == SAGEMAKER_ROLE_ARN
    # Template's SDK hyperparameters kept, run's hyperparameters JSON-encoded like the SDK does.
    hyperparameters = job["HyperParameters"]
    for key in ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_region"):
        assert hyperparameters[key] == template["HyperParameters"][key]
    assert hyperparameters["epochs"] == "2"
    assert json.loads(hyperparameters["arch"]) == validated["training"]["hyperparameters"]["arch"]
    assert json.loads(hyperparameters["lr"]) == validated["training"]["hyperparameters"]["lr"]
    source = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == DATASET_URI
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/{CONFIG.model_prefix}"
    assert job["ResourceConfig"] == {"InstanceType": CONFIG.training_instance_type,
                                     "InstanceCount": CONFIG.training_instance_count, "VolumeSizeInGB": 30}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": CONFIG.training_max_wait_seconds}
    tags = common.client("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "stepml:run-id", "Value": name} in tags
    assert json.loads(hyperparameters["weights"]) == "imagenet"  # the AWS default
    assert [channel["ChannelName"] for channel in job["InputDataConfig"]] == ["training"]


def test_s3_weights_reach_the_job_as_its_weights_channel(validated: dict, aws: Counts) -> None:
    """Network-isolated jobs get inputs only as channels: SageMaker copies the file in."""
    weights = f"s3://{BUCKET}/{CONFIG.model_prefix}backbones/resnet18.pth"
    doc = {**validated, "training": {**validated["training"], "weights": weights}}
    call(start_sagemaker_training, doc)
    job = describe_job(validated["run_id"])
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {"training": DATASET_URI, "weights": weights}
    assert json.loads(job["HyperParameters"]["weights"]) == weights


def test_start_sagemaker_training_idempotent(validated: dict, aws: Counts,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, start_sagemaker_training, NOW)
    doc = call_twice(start_sagemaker_training, validated)
    assert aws.training_jobs() == 1
    assert describe_job(doc["training_job"]["name"])["TrainingJobName"] == validated["run_id"]


def test_start_sagemaker_training_reuses_a_job_that_exists(validated: dict, aws: Counts,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """moto overwrites a job created twice; AWS refuses the name, which the handler must absorb."""
    freeze_time(monkeypatch, start_sagemaker_training, NOW)
    first = call(start_sagemaker_training, validated)

    def refuse(**request: Any) -> dict:
        raise ClientError({"Error": {"Code": "ResourceInUse", "Message": "already exists"}},
                          "CreateTrainingJob")

    from handlers import common
    monkeypatch.setattr(common.client("sagemaker"), "create_training_job", refuse)
    assert call(start_sagemaker_training, validated) == first
    assert aws.training_jobs() == 1


def test_start_sagemaker_training_surfaces_a_real_validation_error(
        validated: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad request (here: an instance type AWS does not know) is not "the job exists": it
    becomes RequestRefused with AWS's code and message, which the state machine sends to Cleanup."""
    from handlers import common
    from handlers.errors import RequestRefused

    def refuse(**request: Any) -> dict:
        raise ClientError({"Error": {"Code": "ValidationException",
                                     "Message": "Value 'ml.bogus' at 'resourceConfig.instanceType'"}},
                          "CreateTrainingJob")

    monkeypatch.setattr(common.client("sagemaker"), "create_training_job", refuse)
    with pytest.raises(RequestRefused, match="ValidationException: Value 'ml.bogus'"):
        call(start_sagemaker_training, validated)


def test_start_sagemaker_training_never_reuses_another_runs_job(
        validated: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    """An execution name reused after its run: the job with that name is the old run's (its
    stepml:run-id tag says so), and reusing it would serve the old model."""
    from handlers import common
    from handlers.errors import RequestRefused

    freeze_time(monkeypatch, start_sagemaker_training, NOW)
    call(start_sagemaker_training, validated)
    sagemaker = common.client("sagemaker")
    arn = sagemaker.describe_training_job(TrainingJobName=validated["run_id"])["TrainingJobArn"]
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["stepml:run-id"])
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "stepml:run-id", "Value": "an-older-run"}])

    def refuse(**request: Any) -> dict:
        raise ClientError({"Error": {"Code": "ResourceInUse", "Message": "already exists"}},
                          "CreateTrainingJob")

    monkeypatch.setattr(sagemaker, "create_training_job", refuse)
    with pytest.raises(RequestRefused, match="is not this run's"):
        call(start_sagemaker_training, validated)


def test_start_keeps_the_first_started_at(validated: dict, aws: Counts,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, start_sagemaker_training, NOW)
    redriven = {**validated, "training_job": {"started_at": NOW - 100}}
    assert call(start_sagemaker_training, redriven)["training_job"]["started_at"] == NOW - 100


# -- CheckTraining (SageMaker) -----------------------------------------------------------------

@pytest.fixture
def started(validated: dict) -> dict:
    return call(start_sagemaker_training, validated)


def set_job(name: str, **fields: Any) -> None:
    """Drive moto's stored job (moto completes every job at once)."""
    job = sagemaker_backend().training_jobs[name]
    for field, value in fields.items():
        setattr(job, field, value)


def test_check_training_completed(started: dict) -> None:
    doc = call(check_training, started)
    job = doc["training_job"]
    name = started["run_id"]
    assert job["status"] == "Completed"
    assert job["model_artifact"] == f"s3://{BUCKET}/{CONFIG.model_prefix}{name}/output/model.tar.gz"
    assert job["metrics"] == {"train:progress": 100.0}
    assert job["name"] == name and job["backend"] == "sagemaker"


def test_check_training_idempotent(started: dict, aws: Counts) -> None:
    assert call_twice(check_training, started)["training_job"]["status"] == "Completed"
    assert aws.training_jobs() == 1


def test_check_training_in_progress(started: dict) -> None:
    set_job(started["run_id"], training_job_status="InProgress", secondary_status="Training")
    job = call(check_training, started)["training_job"]
    assert job["status"] == "InProgress"
    assert job["secondary_status"] == "Training"
    assert "model_artifact" not in job


def test_check_training_failed_carries_the_failure_reason(started: dict) -> None:
    reason = "AlgorithmError: ExecuteUserScriptError: exit code 1"
    set_job(started["run_id"], training_job_status="Failed", failure_reason=reason)
    with pytest.raises(TrainingFailed) as raised:
        call(check_training, started)
    assert reason in str(raised.value)
    assert started["run_id"] in str(raised.value)


def test_check_training_stopped_is_a_failure(started: dict) -> None:
    set_job(started["run_id"], training_job_status="Stopped")
    with pytest.raises(TrainingFailed, match="stopped"):
        call(check_training, started)


def test_check_training_timed_out(started: dict) -> None:
    set_job(started["run_id"], training_job_status="InProgress")
    overdue = {**started, "training_job": {
        **started["training_job"],
        "started_at": time.time() - started["training"]["max_wait_seconds"] - 5}}
    with pytest.raises(TrainingTimedOut, match=str(started["training"]["max_wait_seconds"])):
        call(check_training, overdue)


def test_check_training_completed_late_is_not_a_time_out(started: dict) -> None:
    late = {**started, "training_job": {**started["training_job"], "started_at": 0.0}}
    assert call(check_training, late)["training_job"]["status"] == "Completed"


# -- StartEC2Training and CheckTraining (EC2) --------------------------------------------------

@pytest.fixture
def validated_ec2(aws: Counts) -> dict:
    return call(validate_input, run_input(training={"backend": "ec2", "hyperparameters": {"epochs": 2}}))


def live_instance(run_id: str) -> dict:
    reservations = common.client("ec2").describe_instances(Filters=[
        {"Name": "tag:stepml:run-id", "Values": [run_id]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1
    return instances[0]


def test_start_ec2_training(start_ec2_training: ModuleType, validated_ec2: dict, aws: Counts,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, start_ec2_training, NOW)
    doc = call(start_ec2_training, validated_ec2)

    run_id = validated_ec2["run_id"]
    base = f"s3://{BUCKET}/{CONFIG.model_prefix}{run_id}"
    job = doc["training_job"]
    assert job == {"backend": "ec2", "instance_id": job["instance_id"], "status": "InProgress",
                   "status_uri": f"{base}/status.json", "model_uri": f"{base}/output", "started_at": NOW}
    instance = live_instance(run_id)
    assert instance["InstanceId"] == job["instance_id"]
    assert instance["InstanceType"] == CONFIG.ec2_instance_type
    ami = common.client("ssm").get_parameter(Name=CONFIG.ec2_ami_parameter)
    assert instance["ImageId"] == ami["Parameter"]["Value"]
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{EC2_INSTANCE_PROFILE}")
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["stepml:run-id"] == run_id and tags["stepml:purpose"] == "training"
    ec2 = common.client("ec2")
    behaviour = ec2.describe_instance_attribute(InstanceId=job["instance_id"],
                                                Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    user_data = ec2.describe_instance_attribute(InstanceId=job["instance_id"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    for needed in (EC2_CODE_URI, DATASET_URI, job["model_uri"], job["status_uri"]):
        assert needed in script, f"user data does not mention {needed}"
    assert "shutdown" in script


def test_ec2_training_uses_a_pytorch_dlami_with_a_sized_root_volume_and_imdsv2(
        start_ec2_training: ModuleType, validated_ec2: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # the public parameter of an AWS Deep Learning AMI with PyTorch (find-dlami-id.html's format)
    assert re.fullmatch(r"/aws/service/deeplearning/ami/x86_64/[a-z0-9.-]*pytorch[a-z0-9.-]*"
                        r"amazon-linux-2023/latest/ami-id", CONFIG.ec2_ami_parameter)
    ec2 = common.client("ec2")
    requests: list[dict] = []
    ec2.meta.events.register("provide-client-params.ec2.RunInstances",
                             lambda params, **_: requests.append(dict(params)))
    job = call(start_ec2_training, validated_ec2)["training_job"]

    image = ec2.describe_images(ImageIds=[requests[0]["ImageId"]])["Images"][0]
    snapshot_gb = image["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    root = max(CONFIG.ec2_root_volume_gb, snapshot_gb + start_ec2_training.MIN_FREE_GB)
    assert requests[0]["BlockDeviceMappings"] == [{"DeviceName": image["RootDeviceName"], "Ebs": {
        "VolumeSize": root, "VolumeType": "gp3", "DeleteOnTermination": True}}]
    assert requests[0]["MetadataOptions"] == {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                              "HttpPutResponseHopLimit": 1}
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                             "Values": [job["instance_id"]]}])["Volumes"]
    assert [(v["Size"], v["VolumeType"]) for v in volumes] == [(root, "gp3")]
    options = live_instance(validated_ec2["run_id"])["MetadataOptions"]
    assert options["HttpTokens"] == "required" and options["HttpEndpoint"] == "enabled"


def test_ec2_root_volume_grows_with_the_setting_and_the_ami(
        start_ec2_training: ModuleType, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    image = common.client("ssm").get_parameter(Name=CONFIG.ec2_ami_parameter)["Parameter"]["Value"]
    monkeypatch.setenv("EC2_ROOT_VOLUME_GB", "250")
    assert start_ec2_training.root_volume(image)["Ebs"]["VolumeSize"] == 250
    monkeypatch.setenv("EC2_ROOT_VOLUME_GB", "1")  # never below the AMI's snapshot + scratch
    snapshot_gb = common.client("ec2").describe_images(ImageIds=[image])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    assert start_ec2_training.root_volume(image)["Ebs"]["VolumeSize"] == (
        snapshot_gb + start_ec2_training.MIN_FREE_GB)


def test_start_ec2_training_idempotent(start_ec2_training: ModuleType, validated_ec2: dict,
                                       aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, start_ec2_training, NOW)
    doc = call_twice(start_ec2_training, validated_ec2)
    instances = aws.live_instances()
    assert [i["InstanceId"] for i in instances] == [doc["training_job"]["instance_id"]]


def test_start_ec2_training_pinned_ami(start_ec2_training: ModuleType, validated_ec2: dict,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = common.client("ec2").register_image(Name="pinned-pytorch-ami")["ImageId"]
    monkeypatch.setenv("EC2_AMI_ID", pinned)
    call(start_ec2_training, validated_ec2)
    assert live_instance(validated_ec2["run_id"])["ImageId"] == pinned


@pytest.fixture
def started_ec2(start_ec2_training: ModuleType, validated_ec2: dict) -> dict:
    return call(start_ec2_training, validated_ec2)


def put_status(doc: dict, status: dict) -> None:
    key = doc["training_job"]["status_uri"].removeprefix(f"s3://{BUCKET}/")
    common.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(status))


def test_check_ec2_training_running(started_ec2: dict) -> None:
    job = call(check_training, started_ec2)["training_job"]
    assert job["status"] == "InProgress"
    assert job["instance_state"] == "running"


def test_check_ec2_training_completed(started_ec2: dict, aws: Counts) -> None:
    artifact = started_ec2["training_job"]["model_uri"] + "/model.tar.gz"
    put_status(started_ec2, {"status": "Completed", "model_artifact": artifact,
                             "metrics": {"test_acc": 0.95}})
    job = call_twice(check_training, started_ec2)["training_job"]
    assert job["status"] == "Completed"
    assert job["model_artifact"] == artifact
    assert job["metrics"] == {"test_acc": 0.95}
    assert len(aws.live_instances()) == 1  # the instance terminates itself; checking does not


def test_check_ec2_training_failed_status(started_ec2: dict) -> None:
    put_status(started_ec2, {"status": "Failed", "reason": "CUDA out of memory"})
    with pytest.raises(TrainingFailed, match="CUDA out of memory"):
        call(check_training, started_ec2)


def test_check_ec2_instance_gone_without_status(started_ec2: dict) -> None:
    instance_id = started_ec2["training_job"]["instance_id"]
    common.client("ec2").terminate_instances(InstanceIds=[instance_id])
    with pytest.raises(TrainingFailed, match=f"{instance_id} is terminated"):
        call(check_training, started_ec2)


def test_check_ec2_training_timed_out(started_ec2: dict) -> None:
    overdue = {**started_ec2, "training_job": {**started_ec2["training_job"], "started_at": 0.0}}
    with pytest.raises(TrainingTimedOut):
        call(check_training, overdue)


# -- Tune and CheckTuning ----------------------------------------------------------------------

@pytest.fixture
def validated_tuning(aws: Counts) -> dict:
    return call(validate_input, run_input(tuning={"max_jobs": 4, "max_parallel_jobs": 2}))


def test_tune(validated_tuning: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, tune, NOW)
    doc = call(tune, validated_tuning)

    name = doc["tuning_job"]["name"]
    assert doc["tuning_job"] == {"name": name, "status": "InProgress", "started_at": NOW}
    assert name.startswith("hpo-") and len(name) <= 32
    described = common.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    config = described["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "valid_acc"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert [r["Name"] for r in ranges["ContinuousParameterRanges"]] == ["lr"]
    assert [r["Name"] for r in ranges["IntegerParameterRanges"]] == ["batch-size"]
    definition = described["TrainingJobDefinition"]
    assert "lr" not in definition["StaticHyperParameters"]
    assert "batch-size" not in definition["StaticHyperParameters"]
    assert definition["StaticHyperParameters"]["epochs"] == "2"
    assert definition["StaticHyperParameters"]["sagemaker_program"] == \
        TRAINING_TEMPLATE["HyperParameters"]["sagemaker_program"]
    assert definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == DATASET_URI


def test_tune_idempotent(validated_tuning: dict, aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, tune, NOW)
    call_twice(tune, validated_tuning)
    assert aws.tuning_jobs() == 1
    assert aws.training_jobs() == 0


@pytest.fixture
def tuning(validated_tuning: dict) -> dict:
    doc = call(tune, validated_tuning)
    job = sagemaker_backend().hyper_parameter_tuning_jobs[doc["tuning_job"]["name"]]
    job.best_training_job = {**job.best_training_job, "TrainingJobName": "hpo-best-003",
                             "TunedHyperParameters": {"lr": "0.0125", "batch-size": "32"},
                             "FinalHyperParameterTuningJobObjectiveMetric": {
                                 "Type": "Maximize", "MetricName": "valid_acc", "Value": 0.97}}
    return doc


def test_check_tuning_completed_feeds_training(tuning: dict) -> None:
    doc = call(check_tuning, tuning)
    assert doc["tuning_job"]["status"] == "Completed"
    assert doc["tuning_job"]["best_job"] == "hpo-best-003"
    assert doc["tuning_job"]["objective"] == 0.97
    assert doc["tuning_job"]["best_hyperparameters"] == {"lr": 0.0125, "batch-size": 32}
    assert doc["training"]["hyperparameters"] == {**tuning["training"]["hyperparameters"],
                                                  "lr": 0.0125, "batch-size": 32}


def test_check_tuning_idempotent(tuning: dict, aws: Counts) -> None:
    assert call_twice(check_tuning, tuning)["tuning_job"]["status"] == "Completed"
    assert aws.tuning_jobs() == 1


def test_check_tuning_times_out_into_cleanup(tuning: dict) -> None:
    from handlers.errors import TuningTimedOut

    job = sagemaker_backend().hyper_parameter_tuning_jobs[tuning["tuning_job"]["name"]]
    job.hyper_parameter_tuning_job_status = "InProgress"
    late = {**tuning, "tuning": {**tuning["tuning"], "max_wait_seconds": 5},
            "tuning_job": {**tuning["tuning_job"], "started_at": tuning["tuning_job"]["started_at"] - 10}}
    with pytest.raises(TuningTimedOut, match="still InProgress after 5.0 s"):
        call(check_tuning, late)
    # Unset, the deadline is every round of parallel trials at training.max_wait_seconds.
    assert check_tuning.tuning_deadline({"tuning": {"max_jobs": 5, "max_parallel_jobs": 2},
                                         "training": {"max_wait_seconds": 100}}) == 300


def test_check_tuning_in_progress_and_failed(tuning: dict) -> None:
    job = sagemaker_backend().hyper_parameter_tuning_jobs[tuning["tuning_job"]["name"]]
    job.hyper_parameter_tuning_job_status = "InProgress"
    doc = call(check_tuning, tuning)
    assert doc["tuning_job"]["status"] == "InProgress"
    assert doc["training"] == tuning["training"]

    job.hyper_parameter_tuning_job_status, job.failure_reason = "Failed", "no trial completed"
    with pytest.raises(TuningFailed, match="no trial completed"):
        call(check_tuning, tuning)
