"""New-account rehearsal (issue 14): the pipeline deployed to a local cloud with a new AWS
account's quotas fails at the first state a quota refuses, as the named error QuotaExceeded
that names the quota to raise, and goes through Cleanup; nothing is left running."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.run import execution_input, make_sample_dataset, start_execution
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig

pytestmark = pytest.mark.timeout(600)


def test_training_quota_of_a_new_account_fails_named_through_cleanup(tmp_path: Path) -> None:
    config = PipelineConfig(reserved_concurrency=0, provisioned_concurrency=0)  # the adaptation
    settings = LocalCloudSettings(options={"account": {"profile": "new"}})
    with LocalCloud(settings=settings) as cloud:
        deployer = Deployer.for_local_cloud(config, cloud.url)
        deployed = deployer.deploy()
        dataset = upload_dataset(deployer.client("s3"), config.bucket,
                                 make_sample_dataset(tmp_path / "sample"), "sample")
        sfn = deployer.client("stepfunctions")
        arn = start_execution(sfn, deployed.state_machine_arn,
                              execution_input(dataset, "sagemaker", local=True), name="new-account")
        deadline = time.monotonic() + 300
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution still running"
            time.sleep(0.5)
        assert described["status"] == "FAILED"
        assert described["error"] == "QuotaExceeded"
        cause = json.loads(described["cause"])["errorMessage"]
        assert "'ml.c5.xlarge for training job usage' is 0 Instances" in cause
        assert "request-service-quota-increase --service-code sagemaker" in cause
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        assert entered[-3:] == ["StartSageMakerTraining", "Cleanup", "PipelineFailed"]
        sagemaker = deployer.client("sagemaker")
        assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
