"""Local-cloud hyperparameter tuning: real training jobs per trial, best job by the objective."""

from __future__ import annotations

import random
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.localcloud.sagemaker.hpo import candidates, sample
from tests.localcloud.test_sagemaker_training import group_alive, source_archive, started_groups
from tests.roles import service_role

EXTENSIONS = ["infra_scripts.localcloud.sagemaker.training",
              "infra_scripts.localcloud.sagemaker.hpo"]
BUCKET = "stepml-hpo"

# valid_acc grows with epochs and falls with |log10(lr) + 2|: the best trial is predictable.
STAND_IN = textwrap.dedent('''
    import argparse, math, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--sleep", type=float, default=0)
    args, _ = parser.parse_known_args()
    if args.mode == "fail":
        print("error: this trial fails", file=sys.stderr)
        sys.exit(2)
    time.sleep(args.sleep)
    acc = 0.5 + args.epochs / 100 - abs(math.log10(args.lr) + 2) / 10
    print(f"epoch={args.epochs} valid_loss={1 - acc:.4f} valid_acc={acc:.4f}")
''')


SCRIPT_MODE = {"sagemaker_program": '"hpo_stand_in.py"',
               "sagemaker_submit_directory": f'"s3://{BUCKET}/code/hpo.tar.gz"'}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    settings = LocalCloudSettings(options={"sagemaker_training": {"stop_grace_s": 1}})
    with LocalCloud(extensions=EXTENSIONS, settings=settings) as running:
        s3 = running.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/hpo.tar.gz",
                      Body=source_archive({"hpo_stand_in.py": STAND_IN}))
        s3.put_object(Bucket=BUCKET, Key="data/train/a/1.jpg", Body=b"x")
        yield running
        groups = started_groups(running)
    assert not [g for g in groups if group_alive(g)], "trial processes outlived cloud.stop()"


def tune(cloud: LocalCloud, name: str, ranges: dict[str, Any], max_jobs: int = 4,
         parallel: int = 2, objective: str = "valid:acc", kind: str = "Maximize",
         strategy: str = "Random", static: dict[str, str] | None = None) -> Any:
    sm = cloud.boto3_client("sagemaker")
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": kind, "MetricName": objective},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs,
                               "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": ranges,
        },
        TrainingJobDefinition={
            "StaticHyperParameters": {**SCRIPT_MODE, **(static or {"epochs": "1"})},
            "AlgorithmSpecification": {
                "TrainingImage": "local", "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "valid:acc", "Regex": r"valid_acc=([0-9.]+)"},
                                      {"Name": "valid:loss", "Regex": r"valid_loss=([0-9.]+)"}]},
            "RoleArn": service_role(cloud, "training", "sagemaker.amazonaws.com"),
            "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data"}}}],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        })
    return sm


def wait_tuning(sm: Any, name: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if described["HyperParameterTuningJobStatus"] in {"Completed", "Failed", "Stopped"}:
            return described
        time.sleep(0.1)
    raise AssertionError(f"{name} still {described['HyperParameterTuningJobStatus']}")


def trials(sm: Any, name: str) -> list[dict]:
    return sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100)["TrainingJobSummaries"]


def test_sampling_respects_ranges_and_scaling() -> None:
    ranges = {
        "IntegerParameterRanges": [{"Name": "batch", "MinValue": "8", "MaxValue": "64",
                                    "ScalingType": "Logarithmic"}],
        "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1",
                                       "ScalingType": "Logarithmic"}],
        "CategoricalParameterRanges": [{"Name": "arch", "Values": ["resnet18", "resnet34"]}],
    }
    points = [sample(ranges, random.Random(seed)) for seed in range(200)]
    assert all(8 <= int(p["batch"]) <= 64 for p in points)
    lrs = [float(p["lr"]) for p in points]
    assert all(0.0001 <= lr <= 0.1 for lr in lrs)
    assert sum(lr < 0.001 for lr in lrs) > 40  # log-uniform: a third of the mass below 1e-3
    assert {p["arch"] for p in points} == {"resnet18", "resnet34"}
    grid = {"CategoricalParameterRanges": [{"Name": "a", "Values": ["1", "2"]},
                                           {"Name": "b", "Values": ["x", "y", "z"]}]}
    assert len(list(candidates(grid, "Grid", random.Random(0)))) == 6


def test_random_search_runs_trials_and_reports_the_best(cloud: LocalCloud) -> None:
    ranges = {"IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "30"}],
              "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.0001",
                                             "MaxValue": "1", "ScalingType": "Logarithmic"}]}
    sm = tune(cloud, "hpo-random", ranges, max_jobs=4, parallel=2)
    described = wait_tuning(sm, "hpo-random")

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["TrainingJobStatusCounters"]["Completed"] == 4
    assert described["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    summaries = trials(sm, "hpo-random")
    assert len(summaries) == 4
    assert all(s["TuningJobName"] == "hpo-random" for s in summaries)
    values = {s["TrainingJobName"]: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
              for s in summaries}
    best = described["BestTrainingJob"]
    assert best["TrainingJobName"] == max(values, key=values.get)
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == "valid:acc"
    assert set(best["TunedHyperParameters"]) == {"epochs", "lr"}
    job = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert job["TuningJobArn"] == described["HyperParameterTuningJobArn"]
    assert job["HyperParameters"]["epochs"] == best["TunedHyperParameters"]["epochs"]
    assert_parallelism(sm, summaries, limit=2)
    assert "HyperParameterTuningEndTime" in described


def assert_parallelism(sm: Any, summaries: list[dict], limit: int) -> None:
    spans = []
    for summary in summaries:
        job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        spans.append((job["CreationTime"], job["TrainingEndTime"]))
    for start, _ in spans:
        running = sum(s <= start <= e for s, e in spans)
        assert running <= limit, f"{running} trials overlapped; limit {limit}"


def test_grid_search_with_failures_and_minimize(cloud: LocalCloud) -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "mode", "Values": ["ok", "fail"]},
                                             {"Name": "epochs", "Values": ["1", "5"]}]}
    sm = tune(cloud, "hpo-grid", ranges, max_jobs=10, parallel=2, strategy="Grid",
              objective="valid:loss", kind="Minimize")
    described = wait_tuning(sm, "hpo-grid")
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["TrainingJobStatusCounters"]["Completed"] == 2
    assert described["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert described["BestTrainingJob"]["TunedHyperParameters"] == {"mode": "ok", "epochs": "5"}
    failed = trials(sm, "hpo-grid")
    assert sum(s["ObjectiveStatus"] == "Failed" for s in failed) == 2


def test_all_trials_failing_fails_the_tuning_job(cloud: LocalCloud) -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "mode", "Values": ["fail"]}]}
    sm = tune(cloud, "hpo-bad", ranges, max_jobs=2, parallel=1, strategy="Grid")
    described = wait_tuning(sm, "hpo-bad")
    assert described["HyperParameterTuningJobStatus"] == "Failed"
    assert "ExecuteUserScriptError:\nExitCode 2" in described["FailureReason"]  # the toolkit's
    assert "BestTrainingJob" not in described


def test_stop_tuning_job_stops_running_trials(cloud: LocalCloud) -> None:
    ranges = {"IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "9"}]}
    sm = tune(cloud, "hpo-stop", ranges, max_jobs=6, parallel=2, static={"sleep": "60"})
    deadline = time.monotonic() + 20
    while len([s for s in trials(sm, "hpo-stop") if s["TrainingJobStatus"] == "InProgress"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-stop")
    described = wait_tuning(sm, "hpo-stop")
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    assert {s["TrainingJobStatus"] for s in trials(sm, "hpo-stop")} == {"Stopped"}
    assert len(trials(sm, "hpo-stop")) == 2  # nothing launched after the stop
    with pytest.raises(ClientError, match="ValidationException"):
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-stop")


def test_objective_must_be_a_metric_definition(cloud: LocalCloud) -> None:
    with pytest.raises(ClientError, match="objective metric"):
        tune(cloud, "hpo-nometric", {}, objective="test:acc")
    with pytest.raises(ClientError, match="ResourceNotFound"):
        cloud.boto3_client("sagemaker").stop_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="nothing")


def test_trials_sort_by_creation_time_across_naive_and_aware_times() -> None:
    """moto's records carry naive UTC datetimes, the run's own fields aware ones; listing a
    tuning job's trials by CreationTime once raised TypeError (a 500) when both were present."""
    from datetime import datetime, timedelta

    from infra_scripts.localcloud.sagemaker.hpo import _sort_key

    aware = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    naive_earlier = (aware - timedelta(seconds=1)).replace(tzinfo=None)
    summaries = [{"CreationTime": aware}, {"CreationTime": naive_earlier}]
    ordered = sorted(summaries, key=_sort_key("CreationTime"))
    assert ordered[0]["CreationTime"].tzinfo is None and ordered[1]["CreationTime"] is aware
