"""Tune: start a SageMaker hyperparameter tuning job over lr and batch size (or reuse it).

Each trial is the same script-mode training job the pipeline runs; the objective is the
validation accuracy the training script prints.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from handlers.common import (
    client,
    error_code,
    state_handler,
    training_hyperparameters,
    weights_channel,
    with_section,
)
from handlers.naming import run_tags, tuning_job_name
from handlers.start_sagemaker_training import load_training_template, sagemaker_hyperparameters

DEFAULT_RANGES = {"lr": [0.0005, 0.05], "batch-size": [16, 64]}
OBJECTIVE = {"Type": "Maximize", "MetricName": "valid_acc"}


def parameter_ranges(ranges: dict) -> dict:
    continuous, integer = [], []
    for name, (low, high) in ranges.items():
        spec = {"Name": name, "MinValue": str(low), "MaxValue": str(high)}
        if isinstance(low, int) and isinstance(high, int):
            integer.append({**spec, "ScalingType": "Auto"})
        else:
            continuous.append({**spec, "ScalingType": "Logarithmic"})
    return {"ContinuousParameterRanges": continuous, "IntegerParameterRanges": integer,
            "CategoricalParameterRanges": []}


def job_definition(doc: dict, ranges: dict) -> dict:
    template = load_training_template()
    static = {k: v for k, v in training_hyperparameters(doc["training"]).items() if k not in ranges}
    return {
        "StaticHyperParameters": sagemaker_hyperparameters(template, static),
        "AlgorithmSpecification": {k: v for k, v in template["AlgorithmSpecification"].items()
                                   if k in ("TrainingImage", "TrainingInputMode", "MetricDefinitions")},
        "RoleArn": template["RoleArn"],
        "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": doc["dataset"]["s3_uri"],
            "S3DataDistributionType": "FullyReplicated"}}}, *weights_channel(doc["training"])],
        "OutputDataConfig": {"S3OutputPath": f"s3://{doc['bucket']}/{doc['model_prefix']}tuning/"},
        "ResourceConfig": {"InstanceType": doc["training"]["instance_type"], "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(doc["training"]["max_wait_seconds"])},
    }


@state_handler
def handler(doc: dict) -> dict:
    tuning = doc["tuning"]
    ranges = tuning.get("ranges", DEFAULT_RANGES)
    name = tuning_job_name(doc["run_id"])
    try:
        client("sagemaker").create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name,
            HyperParameterTuningJobConfig={
                "Strategy": "Random",
                "HyperParameterTuningJobObjective": OBJECTIVE,
                "ResourceLimits": {"MaxNumberOfTrainingJobs": int(tuning["max_jobs"]),
                                   "MaxParallelTrainingJobs": int(tuning.get("max_parallel_jobs", 1))},
                "ParameterRanges": parameter_ranges(ranges),
            },
            TrainingJobDefinition=job_definition(doc, ranges),
            Tags=run_tags(doc["run_id"]),
        )
    except ClientError as error:
        if error_code(error) != "ResourceInUse":
            raise
    return with_section(doc, "tuning_job", {"name": name, "status": "InProgress",
                                            "started_at": time.time()})
