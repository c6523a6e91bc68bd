"""CheckTuning: one poll of the tuning job; when done, its best hyperparameters are the ones
the training state uses."""

from __future__ import annotations

import json
import time

from handlers.common import client, state_handler, with_section
from handlers.errors import TuningFailed, TuningTimedOut


def decode(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


def tuning_deadline(doc: dict) -> float:
    """tuning.max_wait_seconds, else every trial's MaxRuntime in rounds of the parallel ones."""
    tuning = doc.get("tuning", {})
    if tuning.get("max_wait_seconds"):
        return float(tuning["max_wait_seconds"])
    rounds = -(-int(tuning.get("max_jobs", 1)) // max(1, int(tuning.get("max_parallel_jobs", 1))))
    return float(doc["training"]["max_wait_seconds"]) * rounds


@state_handler
def handler(doc: dict) -> dict:
    name = doc["tuning_job"]["name"]
    described = client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    status = described["HyperParameterTuningJobStatus"]
    if status in ("Failed", "Stopped", "Stopping"):
        raise TuningFailed(f"{name}: {described.get('FailureReason', status)}")
    if status != "Completed":
        deadline = tuning_deadline(doc)
        if time.time() - doc["tuning_job"]["started_at"] > deadline:
            raise TuningTimedOut(f"{name} still {status} after {deadline} s (tuning.max_wait_seconds)")
        return with_section(doc, "tuning_job", {"status": "InProgress"})
    best = described["BestTrainingJob"]
    tuned = {k: decode(v) for k, v in best["TunedHyperParameters"].items()}
    training = {**doc["training"],
                "hyperparameters": {**doc["training"]["hyperparameters"], **tuned}}
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
    return {**with_section(doc, "tuning_job", {"status": "Completed", "best_job": best["TrainingJobName"],
                                               "best_hyperparameters": tuned, "objective": objective}),
            "training": training}
