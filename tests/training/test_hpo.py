"""HPO: the SageMaker tuner configuration and the local tuning loop."""
from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from training import hpo
from training.config import InputError

PRINTED = """epoch=1 train_loss=1.2000 valid_loss=0.9000 valid_acc=0.5000 seconds=0.010
epoch=2 train_loss=0.5000 valid_loss=0.4000 valid_acc=0.8800 seconds=0.010
best_epoch=2 best_valid_loss=0.4000 best_valid_acc=0.8800
test_acc=0.9300 test_loss=0.2000
"""


def test_metric_regexes_read_the_printed_lines() -> None:
    assert hpo.parse_metrics(PRINTED) == {
        "train_loss": 0.5, "valid_loss": 0.4, "valid_acc": 0.88, "best_valid_loss": 0.4,
        "best_valid_acc": 0.88, "test_loss": 0.2, "test_acc": 0.93}
    valid_acc = next(m["Regex"] for m in hpo.METRIC_DEFINITIONS if m["Name"] == "valid_acc")
    assert re.findall(valid_acc, "best_valid_acc=0.7") == []  # no cross-talk between names
    assert hpo.OBJECTIVE_METRIC in {m["Name"] for m in hpo.METRIC_DEFINITIONS}


def test_tuning_job_config_is_accepted_by_the_sagemaker_api() -> None:
    config = hpo.tuning_job_config(max_jobs=6, max_parallel_jobs=3)
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6,
                                        "MaxParallelTrainingJobs": 3}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"][0]["Name"] == "lr"
    assert ranges["CategoricalParameterRanges"][0]["Values"] == ["16", "32", "64", "128"]
    with mock_aws():  # botocore validates the request shape against the real API model
        sm = boto3.client("sagemaker", region_name="us-east-1")
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="tune-1", HyperParameterTuningJobConfig=config,
            TrainingJobDefinition={
                "StaticHyperParameters": {"epochs": "10"},
                "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File",
                                           "MetricDefinitions": hpo.METRIC_DEFINITIONS},
                "RoleArn": "arn:aws:iam::123456789012:role/r",
                "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                   "VolumeSizeInGB": 5},
                "StoppingCondition": {"MaxRuntimeInSeconds": 600}})
        described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1")
    assert described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize", "MetricName": "best_valid_loss"}


def test_build_tuner_with_the_sagemaker_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    pytest.importorskip("sagemaker")
    from unittest import mock

    from sagemaker.estimator import Estimator
    session = mock.MagicMock(sagemaker_config=None)  # no AWS calls: the tuner only records
    estimator = Estimator(image_uri="img", role="arn:aws:iam::123456789012:role/r",
                          instance_count=1, instance_type="ml.m5.large",
                          sagemaker_session=session)
    tuner = hpo.build_tuner(estimator, max_jobs=4, max_parallel_jobs=2)
    assert tuner.objective_metric_name == "best_valid_loss"
    assert tuner.objective_type == "Minimize"
    assert set(tuner._hyperparameter_ranges) == {"lr", "batch-size"}
    assert tuner.max_jobs == 4 and tuner.max_parallel_jobs == 2
    assert tuner.metric_definitions == hpo.METRIC_DEFINITIONS


def test_sampled_trials_stay_in_the_search_space() -> None:
    trials = hpo.sample_trials(20, seed=1)
    assert trials == hpo.sample_trials(20, seed=1)
    assert all(hpo.LR_RANGE[0] <= t["lr"] <= hpo.LR_RANGE[1] for t in trials)
    assert {t["batch-size"] for t in trials} <= set(hpo.BATCH_SIZES)


def test_local_tuning_returns_the_best_trial(tiny_data: Path, tmp_path: Path) -> None:
    seen = []
    result = hpo.run_local_tuning(str(tiny_data), trials=2, epochs=8, workdir=tmp_path,
                                  extra_args=["--image-size", "32", "--workers", "0",
                                              "--threads", "1"], on_trial=seen.append)
    assert [t["status"] for t in result["trials"]] == ["Completed", "Completed"] == [
        t["status"] for t in seen]
    losses = [t["metrics"]["best_valid_loss"] for t in result["trials"]]
    assert result["best"]["metrics"]["best_valid_loss"] == min(losses)
    assert result["best"]["hyperparameters"] in hpo.sample_trials(2, seed=0)
    assert (Path(result["best"]["model_dir"]) / "model.pth").is_file()


def test_local_tuning_stops_on_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data directory not found"):
        hpo.run_local_tuning(str(tmp_path / "missing"), trials=3, workdir=tmp_path)
    assert not (tmp_path / "trial-02").exists()  # the first bad-input exit ends the search
