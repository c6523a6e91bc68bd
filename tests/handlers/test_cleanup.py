"""Cleanup: stop training, terminate this run's instances, remove hosting that never served;
leave serving endpoints and other runs alone; safe to run twice."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handlers import cleanup, common, start_sagemaker_training, validate_input
from tests.handlers.conftest import CONFIG, Counts, call, run_input, sagemaker_backend


def error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch, aws: Counts) -> list[str]:
    """moto lacks StopTrainingJob and StopHyperParameterTuningJob: stand-ins on the handlers'
    cached SageMaker client move moto's stored job as AWS would, and refuse (ValidationException,
    as AWS does) to stop a job that is not running."""
    calls: list[str] = []
    backend = sagemaker_backend()

    def stop_training_job(*, TrainingJobName: str) -> dict:  # noqa: N803
        job = backend.training_jobs[TrainingJobName]
        if job.training_job_status != "InProgress":
            raise error("ValidationException", "StopTrainingJob")
        job.training_job_status = "Stopping"
        calls.append(TrainingJobName)
        return {}

    def stop_hyper_parameter_tuning_job(*, HyperParameterTuningJobName: str) -> dict:  # noqa: N803
        job = backend.hyper_parameter_tuning_jobs[HyperParameterTuningJobName]
        if job.hyper_parameter_tuning_job_status != "InProgress":
            raise error("ValidationException", "StopHyperParameterTuningJob")
        job.hyper_parameter_tuning_job_status = "Stopping"
        calls.append(HyperParameterTuningJobName)
        return {}

    sagemaker = common.client("sagemaker")
    monkeypatch.setattr(sagemaker, "stop_training_job", stop_training_job)
    monkeypatch.setattr(sagemaker, "stop_hyper_parameter_tuning_job", stop_hyper_parameter_tuning_job)
    return calls


def failed(doc: dict, error_name: str = "States.TaskFailed") -> dict:
    """Cleanup's input: the failed state's input with the Catch's $.error."""
    return {**doc, "error": {"Error": error_name, "Cause": "something broke"}}


def test_nothing_to_do_when_validation_failed(aws: Counts) -> None:
    doc = call(cleanup, failed(run_input()["input"], "InvalidInput"))
    assert doc["cleanup"] == {"removed": []}
    assert doc["error"]["Error"] == "InvalidInput"


def test_stops_an_in_progress_training_job(validated: dict, stops: list[str]) -> None:
    doc = call(start_sagemaker_training, validated)
    name = doc["training_job"]["name"]
    sagemaker_backend().training_jobs[name].training_job_status = "InProgress"

    first = call(cleanup, failed(doc))
    assert first["cleanup"]["removed"] == [f"training job {name}"]
    assert first["error"] == {"Error": "States.TaskFailed", "Cause": "something broke"}
    assert stops == [name]
    assert sagemaker_backend().training_jobs[name].training_job_status == "Stopping"

    second = call(cleanup, failed(doc))
    assert second["cleanup"]["removed"] == []
    assert stops == [name]


def test_leaves_a_finished_training_job(validated: dict, stops: list[str]) -> None:
    doc = call(start_sagemaker_training, validated)  # moto's jobs are Completed at once
    assert call(cleanup, failed(doc))["cleanup"]["removed"] == []
    assert stops == []


def test_stops_a_tuning_job(aws: Counts, stops: list[str]) -> None:
    from handlers import tune

    doc = call(tune, call(validate_input, run_input(tuning={"max_jobs": 2})))
    name = doc["tuning_job"]["name"]
    sagemaker_backend().hyper_parameter_tuning_jobs[name].hyper_parameter_tuning_job_status = "InProgress"

    assert call(cleanup, failed(doc))["cleanup"]["removed"] == [f"tuning job {name}"]
    assert call(cleanup, failed(doc))["cleanup"]["removed"] == []
    assert stops == [name]


def test_terminates_this_runs_instance_only(start_ec2_training: ModuleType, aws: Counts) -> None:
    validated = call(validate_input, run_input(training={"backend": "ec2"}))
    doc = call(start_ec2_training, validated)
    instance_id = doc["training_job"]["instance_id"]
    ec2 = common.client("ec2")
    other = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "stepml:run-id", "Value": "another-run"}]}],
    )["Instances"][0]["InstanceId"]

    first = call(cleanup, failed(doc))
    assert first["cleanup"]["removed"] == [f"instances {[instance_id]}"]
    assert [i["InstanceId"] for i in aws.live_instances()] == [other]

    second = call(cleanup, failed(doc))
    assert second["cleanup"]["removed"] == []
    assert [i["InstanceId"] for i in aws.live_instances()] == [other]


def test_terminates_an_instance_the_document_never_recorded(start_ec2_training: ModuleType,
                                                            aws: Counts) -> None:
    """StartEC2Training launched, then failed before returning: the run tag still finds it."""
    validated = call(validate_input, run_input(training={"backend": "ec2"}))
    call(start_ec2_training, validated)
    assert call(cleanup, failed(validated))["cleanup"]["removed"] != []
    assert aws.live_instances() == []


def test_removes_an_endpoint_that_never_served(deployed: dict, aws: Counts) -> None:
    run_id = deployed["run_id"]
    assert deployed["endpoint"]["action"] == "created"
    assert deployed["endpoint"]["status"] == "Deploying"
    sagemaker_backend().endpoints[CONFIG.endpoint_name].endpoint_status = "Failed"

    first = call(cleanup, failed(deployed, "EndpointFailed"))
    assert first["cleanup"]["removed"] == [f"endpoint {CONFIG.endpoint_name}",
                                           f"endpoint config {run_id}", f"model {run_id}"]
    assert (aws.endpoints(), aws.endpoint_configs(), aws.models()) == (0, 0, 0)

    second = call(cleanup, failed(deployed, "EndpointFailed"))
    assert second["cleanup"]["removed"] == []


def test_leaves_an_in_service_endpoint(serving: dict, aws: Counts) -> None:
    """SmokeTest (say) failed after the endpoint went InService: it serves; keep it."""
    for _ in range(2):
        assert call(cleanup, failed(serving, "SmokeTestFailed"))["cleanup"]["removed"] == []
    endpoint = common.client("sagemaker").describe_endpoint(
        EndpointName=CONFIG.endpoint_name)
    assert endpoint["EndpointStatus"] == "InService"
    assert (aws.endpoints(), aws.endpoint_configs(), aws.models()) == (1, 1, 1)


def test_leaves_an_endpoint_it_only_updated(deployed: dict, aws: Counts) -> None:
    """An update that failed rolls back to the previous config: the endpoint is not this run's
    to delete, but this run's unused config and model go."""
    run_id = deployed["run_id"]
    updated = {**deployed, "endpoint": {**deployed["endpoint"], "action": "updated",
                                        "previous_config": "previous-run"}}
    removed = call(cleanup, failed(updated, "EndpointFailed"))["cleanup"]["removed"]
    assert removed == [f"endpoint config {run_id}", f"model {run_id}"]
    assert aws.endpoints() == 1


def test_unexpected_errors_are_not_swallowed(deployed: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(**_: Any) -> dict:
        raise error("AccessDeniedException", "DeleteEndpoint")

    monkeypatch.setattr(common.client("sagemaker"), "delete_endpoint", denied)
    with pytest.raises(ClientError, match="AccessDenied"):
        call(cleanup, failed(deployed))
