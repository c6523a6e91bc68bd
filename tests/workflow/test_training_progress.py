"""`stepml run` shows the latest epoch line of the run's training job while it trains."""

from __future__ import annotations

import time

import boto3
from moto import mock_aws

from handlers.validate_input import run_id
from infra_scripts.training_progress import TrainingProgress


@mock_aws
def test_latest_epoch_line_of_the_runs_sagemaker_job_is_shown():
    logs = boto3.client("logs", region_name="us-east-1")
    job = run_id("run-1")[:63]
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1")
    lines = ["starting", "epoch=1 train_loss=1.2 valid_loss=1.1 valid_acc=0.41 seconds=0.2",
             "epoch=2 train_loss=0.7 valid_loss=0.5 valid_acc=0.88 seconds=0.2", "best_epoch=2"]
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1",
                        logEvents=[{"timestamp": int(time.time() * 1000) + i, "message": m}
                                   for i, m in enumerate(lines)])
    progress = TrainingProgress(lambda service: boto3.client(service, region_name="us-east-1"),
                                "run-1", "sagemaker", every_s=0)
    assert progress() == "· training epoch=2 valid_loss=0.5 valid_acc=0.88"


@mock_aws
def test_nothing_is_shown_before_training_prints():
    progress = TrainingProgress(lambda service: boto3.client(service, region_name="us-east-1"),
                                "run-2", "ec2", every_s=0)
    assert progress() == ""
