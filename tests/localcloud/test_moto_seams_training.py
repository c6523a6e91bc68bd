"""The moto 5.2 internals that sagemaker_training, sagemaker_hpo and ec2_instances rely on.

Each check fails with a message naming the extension to revisit when moto moves; they run
against plain moto (no extensions), so a failure here is moto's change, not ours.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra_scripts.localcloud.core.server import LocalCloud

ROLE = "arn:aws:iam::123456789012:role/r"


def require(condition: bool, what: str, extension: str) -> None:
    assert condition, f"moto changed: {what} — revisit infra_scripts/localcloud/{extension}.py"


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.fixture(scope="module")
def plain_moto() -> Iterator[LocalCloud]:
    with LocalCloud(extensions=[]) as cloud:
        yield cloud


# -- SageMaker training jobs ----------------------------------------------------------------------
def test_training_job_backend_seams(plain_moto: LocalCloud) -> None:
    from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    ext = "sagemaker/training"
    require("create_training_job" in vars(SageMakerModelBackend),
            "SageMakerModelBackend.create_training_job moved", ext)
    wanted = {"training_job_name", "hyper_parameters", "algorithm_specification",
              "input_data_config", "output_data_config", "resource_config",
              "stopping_condition", "checkpoint_config"}
    missing = wanted - set(params(SageMakerModelBackend.create_training_job))
    require(not missing, f"create_training_job lost parameters {missing}", ext)
    require("create_training_job" in vars(SageMakerResponse),
            "SageMakerResponse.create_training_job (Environment capture) moved", ext)
    require(callable(getattr(FakeTrainingJob, "arn_formatter", None)),
            "FakeTrainingJob.arn_formatter moved", ext)

    sm = plain_moto.boto3_client("sagemaker")
    sm.create_training_job(
        TrainingJobName="seam", RoleArn=ROLE, HyperParameters={"a": "1"},
        AlgorithmSpecification={"TrainingImage": "x", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://b/o"}, StoppingCondition={},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1})
    backend = plain_moto.backend("sagemaker")
    job = backend.training_jobs.get("seam")
    require(isinstance(job, FakeTrainingJob), "backend.training_jobs[name] is the job", ext)
    for attribute in ("training_job_name", "arn", "hyper_parameters", "algorithm_specification",
                      "input_data_config", "output_data_config", "resource_config",
                      "stopping_condition", "checkpoint_config", "creation_time",
                      "last_modified_time", "training_job_status", "secondary_status",
                      "secondary_status_transitions", "final_metric_data_list",
                      "model_artifacts", "training_start_time", "training_end_time"):
        require(hasattr(job, attribute), f"FakeTrainingJob.{attribute} moved", ext)
    require(job.arn == FakeTrainingJob.arn_formatter("seam", plain_moto.account_id,
                                                     plain_moto.region),
            "FakeTrainingJob.arn_formatter(name, account, region)", ext)


def test_training_job_response_is_built_from_attributes(plain_moto: LocalCloud) -> None:
    """Describe serialises the job's __dict__ (snake_case → CamelCase) and drops None values:
    the extension answers DescribeTrainingJob by setting attributes."""
    sm = plain_moto.boto3_client("sagemaker")
    sm.create_training_job(
        TrainingJobName="seam-fields", RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "x", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://b/o"}, StoppingCondition={},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1})
    job = plain_moto.backend("sagemaker").training_jobs["seam-fields"]
    job.training_job_status, job.secondary_status = "Failed", "Failed"
    job.failure_reason = "AlgorithmError: x"
    job.tuning_job_arn = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/t"
    job.environment = {"K": "V"}
    job.training_time_in_seconds = 3
    job.model_artifacts = None
    described = sm.describe_training_job(TrainingJobName="seam-fields")
    ext = "sagemaker/training"
    require(described["TrainingJobStatus"] == "Failed", "status from training_job_status", ext)
    require(described.get("FailureReason") == "AlgorithmError: x",
            "FailureReason from failure_reason", ext)
    require(described.get("TuningJobArn", "").endswith("/t"), "TuningJobArn attribute", ext)
    require(described.get("Environment") == {"K": "V"}, "Environment attribute", ext)
    require(described.get("TrainingTimeInSeconds") == 3, "TrainingTimeInSeconds attribute", ext)
    require("ModelArtifacts" not in described, "None-valued fields are omitted", ext)


def test_tuning_job_backend_seams(plain_moto: LocalCloud) -> None:
    from moto.sagemaker.models import HyperParameterTuningJob, SageMakerModelBackend

    ext = "sagemaker/hpo"
    require("create_hyper_parameter_tuning_job" in vars(SageMakerModelBackend),
            "SageMakerModelBackend.create_hyper_parameter_tuning_job moved", ext)
    wanted = {"hyper_parameter_tuning_job_name", "hyper_parameter_tuning_job_config",
              "training_job_definition", "training_job_definitions"}
    missing = wanted - set(params(SageMakerModelBackend.create_hyper_parameter_tuning_job))
    require(not missing, f"create_hyper_parameter_tuning_job lost parameters {missing}", ext)

    sm = plain_moto.boto3_client("sagemaker")
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="seam-tuning",
        HyperParameterTuningJobConfig={
            "Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 1,
                                                     "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "m"}},
        TrainingJobDefinition={
            "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
            "RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "StoppingCondition": {},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 1}})
    job = plain_moto.backend("sagemaker").hyper_parameter_tuning_jobs.get("seam-tuning")
    require(isinstance(job, HyperParameterTuningJob), "hyper_parameter_tuning_jobs[name]", ext)
    for attribute in ("hyper_parameter_tuning_job_name", "arn", "region_name",
                      "hyper_parameter_tuning_job_config", "training_job_definition",
                      "training_job_definitions", "creation_time", "last_modified_time",
                      "hyper_parameter_tuning_job_status", "hyper_parameter_tuning_end_time",
                      "training_job_status_counters", "objective_status_counters",
                      "best_training_job", "OverallBestTrainingJob",
                      "tuning_job_completion_details", "consumed_resources", "failure_reason"):
        require(hasattr(job, attribute), f"HyperParameterTuningJob.{attribute} moved", ext)
    job.hyper_parameter_tuning_job_status = "InProgress"
    job.best_training_job = None
    job.failure_reason = None
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="seam-tuning")
    require(described["HyperParameterTuningJobStatus"] == "InProgress",
            "describe() reads hyper_parameter_tuning_job_status", ext)
    require("BestTrainingJob" not in described and "FailureReason" not in described,
            "None-valued describe() fields are omitted", ext)


def test_cloudwatch_logs_backend_seams(plain_moto: LocalCloud) -> None:
    logs = plain_moto.backend("logs")
    ext = "sagemaker/training"
    for method in ("ensure_log_group", "ensure_log_stream", "put_log_events"):
        require(callable(getattr(logs, method, None)), f"LogsBackend.{method} moved", ext)
    logs.ensure_log_group("/seam")
    logs.ensure_log_stream("/seam", "s")
    now_ms = int(time.time() * 1000)  # older than 14 days would be dropped, as on AWS
    logs.put_log_events("/seam", "s", [{"timestamp": now_ms, "message": "hello"}])
    events = plain_moto.boto3_client("logs").get_log_events(
        logGroupName="/seam", logStreamName="s", startFromHead=True)["events"]
    require([e["message"] for e in events] == ["hello"], "put_log_events(group, stream, events)",
            ext)


def test_sagemaker_exceptions_seams() -> None:
    from moto.sagemaker import exceptions

    for name in ("ValidationError", "ResourceInUseException", "ResourceNotFound"):
        require(hasattr(exceptions, name), f"moto.sagemaker.exceptions.{name} moved",
                "sagemaker/training")
    from moto.core.utils import utcnow

    require(callable(utcnow), "moto.core.utils.utcnow moved", "sagemaker/training")


# -- EC2 instances ------------------------------------------------------------------------------
def test_ec2_backend_seams(plain_moto: LocalCloud) -> None:
    from moto.ec2.models import EC2Backend
    from moto.ec2.models.instances import InstanceBackend, InstanceState, StateReason

    ext = "ec2/instances"
    for method in ("run_instances", "terminate_instances", "stop_instances"):
        require(method in vars(InstanceBackend), f"InstanceBackend.{method} moved", ext)
        owner = next(k for k in EC2Backend.__mro__ if method in vars(k))
        require(owner is InstanceBackend, f"{owner.__name__} overrides {method}", ext)
    require(params(InstanceBackend.terminate_instances)[1] == "instance_ids",
            "terminate_instances(instance_ids)", ext)
    require(params(InstanceBackend.stop_instances)[1] == "instance_ids",
            "stop_instances(instance_ids)", ext)
    require(params(InstanceState.__init__)[1:3] == ["name", "code"], "InstanceState(name, code)",
            ext)
    require(params(StateReason.__init__)[1:3] == ["message", "code"],
            "StateReason(message, code)", ext)

    ec2 = plain_moto.boto3_client("ec2")
    response = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                 UserData="#!/bin/bash\necho hi\n",
                                 InstanceInitiatedShutdownBehavior="terminate")
    instance_id = response["Instances"][0]["InstanceId"]
    instance = plain_moto.backend("ec2").get_instance(instance_id)
    require(instance.user_data.decode() == "#!/bin/bash\necho hi\n",
            "Instance.user_data is a Base64EncodedString with decode()", ext)
    require(instance.instance_initiated_shutdown_behavior == "terminate",
            "Instance.instance_initiated_shutdown_behavior", ext)
    require(isinstance(instance._state, InstanceState), "Instance._state is an InstanceState", ext)
    instance._state = InstanceState("pending", 0)
    state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    require(state["State"] == {"Name": "pending", "Code": 0}, "DescribeInstances reads _state",
            ext)
    instance.terminate()
    instance.state_reason = StateReason("Client.InstanceInitiatedShutdown: x",
                                        "Client.InstanceInitiatedShutdown")
    state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    require(state["State"]["Name"] == "terminated", "Instance.terminate()", ext)
    require(state["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown",
            "DescribeInstances reads state_reason", ext)


def test_ec2_console_output_seams() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    ext = "ec2/instances"
    require("get_console_output" in vars(General), "General.get_console_output moved", ext)
    require(callable(getattr(Base64EncodedString, "from_raw_string", None)),
            "Base64EncodedString.from_raw_string moved", ext)
    require(callable(ActionResult), "moto.core.responses.ActionResult moved", ext)
