"""Cleanup: after any failure, leave nothing costly running.

Stops this run's training (job or instance), and removes the endpoint, endpoint config and
model this run created if they never served. An endpoint that was serving before this run is
left alone: SageMaker rolls a failed update back to the previous config.
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import ClientError

from handlers.common import client, error_code, logger, state_handler, with_section
from handlers.naming import run_instance_filter


def _quietly(action: Callable[[], object], what: str, done: list[str]) -> None:
    """Run one clean-up action; 'already gone' counts as done."""
    try:
        action()
        done.append(what)
    except ClientError as error:
        if error_code(error) not in ("ValidationException", "ResourceNotFound",
                                     "InvalidInstanceID.NotFound", "ObjectNotFoundException"):
            raise
        logger.info("nothing to clean", what=what, reason=str(error))


def stop_training(doc: dict, done: list[str]) -> None:
    job = doc.get("training_job", {})
    sagemaker = client("sagemaker")
    if job.get("backend") == "sagemaker" and job.get("name"):
        status = sagemaker.describe_training_job(TrainingJobName=job["name"])["TrainingJobStatus"]
        if status == "InProgress":
            _quietly(lambda: sagemaker.stop_training_job(TrainingJobName=job["name"]),
                     f"training job {job['name']}", done)
    if doc.get("tuning_job", {}).get("name"):
        name = doc["tuning_job"]["name"]
        _quietly(lambda: sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                 f"tuning job {name}", done)
    terminate_instances(doc["run_id"], done)


def terminate_instances(run_id: str, done: list[str]) -> None:
    ec2 = client("ec2")
    reservations = ec2.describe_instances(Filters=[
        run_instance_filter([run_id]),
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])["Reservations"]
    ids = [i["InstanceId"] for r in reservations for i in r["Instances"]]
    if ids:
        _quietly(lambda: ec2.terminate_instances(InstanceIds=ids), f"instances {ids}", done)


def remove_unserved_hosting(doc: dict, done: list[str]) -> None:
    sagemaker = client("sagemaker")
    endpoint = doc.get("endpoint", {})
    if endpoint.get("action") == "created" and endpoint.get("status") != "InService":
        _quietly(lambda: sagemaker.delete_endpoint(EndpointName=endpoint["name"]),
                 f"endpoint {endpoint['name']}", done)
    serving = endpoint.get("status") == "InService"  # it serves this run's model: keep it
    if doc.get("endpoint_config", {}).get("name") and not serving:
        name = doc["endpoint_config"]["name"]
        _quietly(lambda: sagemaker.delete_endpoint_config(EndpointConfigName=name),
                 f"endpoint config {name}", done)
    if doc.get("model", {}).get("name") and not serving:
        name = doc["model"]["name"]
        _quietly(lambda: sagemaker.delete_model(ModelName=name), f"model {name}", done)


@state_handler
def handler(doc: dict) -> dict:
    done: list[str] = []
    if "run_id" in doc:  # ValidateInput failed before creating anything otherwise
        stop_training(doc, done)
        remove_unserved_hosting(doc, done)
    logger.info("cleanup finished", cleaned=done)
    return with_section(doc, "cleanup", {"removed": done})
