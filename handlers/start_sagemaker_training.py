"""StartSageMakerTraining: start the script-mode training job for this run (or reuse it).

The request template was built at deploy time by the SageMaker SDK's PyTorch estimator; this
handler only fills in the run's names, data, hyperparameters and instance settings.
"""

from __future__ import annotations

import json
import time

from botocore.exceptions import ClientError

from handlers import registry
from handlers.common import (
    client,
    error_code,
    is_transient,
    logger,
    quota_exceeded,
    s3_channel,
    setting,
    split_s3_uri,
    state_handler,
    training_hyperparameters,
    weights_channel,
    with_section,
)
from handlers.errors import RequestRefused
from handlers.naming import RUN_TAG, resource_name, run_of, run_tags


def load_training_template() -> dict:
    bucket, key = split_s3_uri(setting("TRAINING_REQUEST_URI"))
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def sagemaker_hyperparameters(template: dict, hyperparameters: dict) -> dict[str, str]:
    """SageMaker passes every hyperparameter as a string; the SDK JSON-encodes each value."""
    merged = dict(template.get("HyperParameters", {}))
    merged.update({name: json.dumps(value) for name, value in hyperparameters.items()})
    return merged


def training_request(doc: dict, name: str, hyperparameters: dict, baseline: str | None) -> dict:
    template = load_training_template()
    training = doc["training"]
    request = {key: value for key, value in template.items() if key != "S3Operations"}
    request.update(
        TrainingJobName=name,
        HyperParameters=sagemaker_hyperparameters(template, hyperparameters),
        # "baseline": the live model, which the job evaluates on the new test split beside the
        # candidate, in the same container, for the evaluation gate.
        InputDataConfig=[s3_channel("training", doc["dataset"]["s3_uri"]), *weights_channel(training),
                         *([s3_channel("baseline", baseline)] if baseline else [])],
        OutputDataConfig={"S3OutputPath": f"s3://{doc['bucket']}/{doc['model_prefix']}"},
        ResourceConfig={"InstanceType": training["instance_type"],
                        "InstanceCount": int(training["instance_count"]), "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": int(training["max_wait_seconds"])},
        Tags=run_tags(doc["run_id"]),
    )
    return request


def start_job(request: dict, run_id: str) -> None:
    sagemaker = client("sagemaker")
    name = request["TrainingJobName"]
    try:
        sagemaker.create_training_job(**request)
    except ClientError as error:
        if is_transient(error) or quota_exceeded(error):
            raise  # state_handler makes it TransientAwsError (retried) or QuotaExceeded
        message = error.response.get("Error", {}).get("Message", "")
        if error_code(error) != "ResourceInUse":  # the request itself is wrong
            raise RequestRefused(f"CreateTrainingJob {name}: {error_code(error)}: {message}") from error
        # The name exists: a retry or redrive of this run created it, or another run owns it.
        existing = sagemaker.describe_training_job(TrainingJobName=name)
        tags = sagemaker.list_tags(ResourceArn=existing["TrainingJobArn"]).get("Tags", [])
        if run_of(tags) != run_id:
            raise RequestRefused(f"training job {name} exists and is not this run's "
                                 f"({RUN_TAG} is not {run_id}); use a new execution name") from error
        logger.info("training job already exists for this run; reusing", job=name)


@state_handler
def handler(doc: dict) -> dict:
    name = resource_name(doc["run_id"])
    baseline = registry.live_model_data(doc["endpoint"]["name"])
    start_job(training_request(doc, name, training_hyperparameters(doc["training"]), baseline),
              doc["run_id"])
    doc = with_section(doc, "baseline", {"model_data": baseline})
    return with_section(doc, "training_job", {
        "backend": "sagemaker", "name": name, "status": "InProgress",
        "started_at": doc.get("training_job", {}).get("started_at", time.time()),
    })
