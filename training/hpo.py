"""Hyperparameter tuning: SageMaker HyperparameterTuner configuration and a local equivalent.

Both tune the same search space against the same objective, read from the entry point's
printed `key=value` lines. SageMaker's objective is the *latest* value a job emits, so the
objective is `best_valid_loss`, printed once at the end for the kept (best) checkpoint.
"""
from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from training.config import InputError, defaults

_NUM = r"([0-9.]+)"
# \b keeps e.g. `valid_acc=` from matching inside `best_valid_acc=`.
METRIC_DEFINITIONS = [{"Name": name, "Regex": rf"\b{name}={_NUM}"} for name in (
    "train_loss", "valid_loss", "valid_acc", "best_valid_loss", "best_valid_acc",
    "test_loss", "test_acc", "baseline_test_acc")]  # the last: the live model on the same test split
OBJECTIVE_METRIC = "best_valid_loss"
OBJECTIVE_TYPE = "Minimize"

# Hyperparameter names are the entry point's CLI keys, exactly as SageMaker passes them.
LR_RANGE = (1e-4, 1e-1)
BATCH_SIZES = (16, 32, 64, 128)


def tuning_job_config(max_jobs: int = 8, max_parallel_jobs: int = 2,
                      strategy: str = "Bayesian") -> dict:
    """`HyperParameterTuningJobConfig` for boto3's create_hyper_parameter_tuning_job."""
    return {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": OBJECTIVE_TYPE,
                                             "MetricName": OBJECTIVE_METRIC},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs,
                           "MaxParallelTrainingJobs": max_parallel_jobs},
        "ParameterRanges": {
            "ContinuousParameterRanges": [{"Name": "lr", "MinValue": str(LR_RANGE[0]),
                                           "MaxValue": str(LR_RANGE[1]),
                                           "ScalingType": "Logarithmic"}],
            "IntegerParameterRanges": [],
            "CategoricalParameterRanges": [{"Name": "batch-size",
                                            "Values": [str(b) for b in BATCH_SIZES]}]},
        "TrainingJobEarlyStoppingType": "Off",
    }


def build_tuner(estimator, max_jobs: int = 8, max_parallel_jobs: int = 2,
                strategy: str = "Bayesian", base_tuning_job_name: str | None = None):
    """A sagemaker.tuner.HyperparameterTuner over `estimator` (SageMaker SDK v2)."""
    from sagemaker.tuner import (  # the SDK is heavy: only imported when asked for
        CategoricalParameter,
        ContinuousParameter,
        HyperparameterTuner,
    )
    ranges = {"lr": ContinuousParameter(*LR_RANGE, scaling_type="Logarithmic"),
              "batch-size": CategoricalParameter(list(BATCH_SIZES))}
    return HyperparameterTuner(
        estimator, OBJECTIVE_METRIC, ranges, metric_definitions=METRIC_DEFINITIONS,
        objective_type=OBJECTIVE_TYPE, max_jobs=max_jobs, max_parallel_jobs=max_parallel_jobs,
        strategy=strategy, base_tuning_job_name=base_tuning_job_name)


def parse_metrics(log: str) -> dict[str, float]:
    """The last value of each metric in a job's output, as SageMaker reads them."""
    found = {}
    for item in METRIC_DEFINITIONS:
        values = re.findall(item["Regex"], log)
        if values:
            found[item["Name"]] = float(values[-1])
    return found


def sample_trials(trials: int, seed: int) -> list[dict]:
    """Random search over the tuner's space: log-uniform lr, categorical batch size."""
    rng = random.Random(seed)
    low, high = math.log10(LR_RANGE[0]), math.log10(LR_RANGE[1])
    return [{"lr": float(f"{10 ** rng.uniform(low, high):.3g}"),
             "batch-size": rng.choice(BATCH_SIZES)} for _ in range(trials)]


def run_local_tuning(data: str, trials: int = 4, epochs: int = defaults.epochs,
                     seed: int = defaults.seed, workdir: str | Path | None = None,
                     extra_args: list[str] | None = None, on_trial=None) -> dict:
    """Run `trials` training jobs (subprocesses of the entry point, like SageMaker does)
    and return {"objective", "best", "trials"}; `best` holds the winning hyperparameters.

    `on_trial(result)` is called after each trial (for progress output).
    """
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}")
    root = Path(workdir or tempfile.mkdtemp(prefix="stepml-tune-"))
    results = []
    for k, params in enumerate(sample_trials(trials, seed), start=1):
        result = _run_trial(k, params, data, epochs, seed, root / f"trial-{k:02d}",
                            extra_args or [])
        results.append(result)
        if on_trial:
            on_trial(result)
    done = [r for r in results if r["status"] == "Completed" and OBJECTIVE_METRIC in r["metrics"]]
    if not done:
        raise InputError(f"every tuning trial failed; last reason: {results[-1]['reason']}")
    best = min(done, key=lambda r: r["metrics"][OBJECTIVE_METRIC])
    return {"objective": {"name": OBJECTIVE_METRIC, "type": OBJECTIVE_TYPE},
            "best": best, "trials": results, "workdir": str(root)}


def _run_trial(k: int, params: dict, data: str, epochs: int, seed: int, trial_dir: Path,
               extra_args: list[str]) -> dict:
    args = [sys.executable, "-m", "training.train", "--data", str(data),
            "--model-dir", str(trial_dir / "model"),
            "--checkpoint-dir", str(trial_dir / "checkpoints"),
            "--epochs", str(epochs), "--seed", str(seed)]
    args += [x for key, value in params.items() for x in (f"--{key}", str(value))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(args + extra_args, capture_output=True, text=True, env=env)
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "log.txt").write_text(proc.stdout + proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode == 2:  # bad input fails every trial alike: stop now, say why
        raise InputError(errors[-1].removeprefix("error: ") if errors else "bad input")
    return {"trial": k, "hyperparameters": params, "metrics": parse_metrics(proc.stdout),
            "status": "Completed" if proc.returncode == 0 else "Failed",
            "reason": errors[-1] if proc.returncode and errors else None,
            "model_dir": str(trial_dir / "model")}
