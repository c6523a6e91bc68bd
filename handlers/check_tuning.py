"""CheckTuning: one poll of the tuning job; when done, its best hyperparameters are the ones
the training state uses."""

from __future__ import annotations

import json

from handlers.common import client, state_handler, with_section
from handlers.errors import TuningFailed


def decode(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


@state_handler
def handler(doc: dict) -> dict:
    name = doc["tuning_job"]["name"]
    described = client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    status = described["HyperParameterTuningJobStatus"]
    if status in ("Failed", "Stopped", "Stopping"):
        raise TuningFailed(f"{name}: {described.get('FailureReason', status)}")
    if status != "Completed":
        return with_section(doc, "tuning_job", {"status": "InProgress"})
    best = described["BestTrainingJob"]
    tuned = {k: decode(v) for k, v in best["TunedHyperParameters"].items()}
    training = {**doc["training"],
                "hyperparameters": {**doc["training"]["hyperparameters"], **tuned}}
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
    return {**with_section(doc, "tuning_job", {"status": "Completed", "best_job": best["TrainingJobName"],
                                               "best_hyperparameters": tuned, "objective": objective}),
            "training": training}
