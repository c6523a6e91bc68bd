"""Bad input to deploy: a clear message, a non-zero exit, and nothing half-created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from infra_scripts.cfn import changeset
from infra_scripts.cfn.template import template_body
from infra_scripts.cfn.validation import DeployError, bucket_name_problem, check_config
from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud
from statemachine.config import PipelineConfig
from tests.infra.test_deploy_destroy import stepml


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(extensions=[]) as running:  # moto alone: nothing here runs code
        yield running


def nothing_created(cloud: LocalCloud, region: str = "us-east-1") -> None:
    cfn = boto3.client("cloudformation", endpoint_url=cloud.url, region_name=region,
                       aws_access_key_id=cloud.credentials["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=cloud.credentials["AWS_SECRET_ACCESS_KEY"])
    live = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []
    assert cloud.boto3_client("s3").list_buckets()["Buckets"] == []


def deploy(cloud: LocalCloud, **overrides: Any) -> Deployer:
    # moto alone has no Deep Learning AMI parameter (the ec2 extension stands one in): pin an AMI.
    settings = {"prefix": "bad", "bucket": "bad-artifacts", "ec2_ami_id": "ami-0123456789abcdef0",
                **overrides}
    deployer = Deployer.for_local_cloud(PipelineConfig(**settings), cloud.url)
    deployer.deploy()
    return deployer


@pytest.mark.parametrize("name, reason", [
    ("Bad_Bucket", "lower-case letters"), ("ab", "3 to 63"), ("192.168.1.1", "IP address"),
    ("a..b", "'..'"), ("data-s3alias", "reserves"), ("x" * 64, "3 to 63"),
])
def test_bucket_name_rules(name: str, reason: str) -> None:
    assert reason in bucket_name_problem(name)


def test_valid_bucket_names_pass() -> None:
    for name in ("stepml-artifacts", "a.b-c", "abc", "x" * 63):
        assert bucket_name_problem(name) is None


def test_missing_parameter_names_it_and_creates_nothing(cloud: LocalCloud) -> None:
    with pytest.raises(DeployError, match="missing parameter BucketName: set `bucket`"):
        deploy(cloud, bucket="")
    with pytest.raises(DeployError, match="missing parameter EndpointName"):
        check_config(PipelineConfig(endpoint_name=" "))
    nothing_created(cloud)


def test_invalid_bucket_name_creates_nothing(cloud: LocalCloud) -> None:
    with pytest.raises(DeployError, match="invalid bucket name 'Bad_Bucket'"):
        deploy(cloud, bucket="Bad_Bucket")
    nothing_created(cloud)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(DeployError) as caught:
        check_config(PipelineConfig(prefix="Bad Prefix", endpoint_name="Upper",
                                    provisioned_concurrency=200, autoscaling_min=3))
    message = str(caught.value)
    for part in ("prefix 'Bad Prefix'", "endpoint_name 'Upper'", "provisioned_concurrency",
                 "autoscaling_min"):
        assert part in message


def test_region_without_an_ami_creates_nothing(cloud: LocalCloud) -> None:
    # moto alone has no Deep Learning AMI parameter in any region.
    with pytest.raises(DeployError, match="region mx-central-1 has no configured AMI"):
        deploy(cloud, region="mx-central-1", ec2_ami_id="")
    nothing_created(cloud, region="mx-central-1")


def test_cloudformation_rejecting_a_parameter_leaves_no_stack(cloud: LocalCloud) -> None:
    cfn = cloud.boto3_client("cloudformation")
    body = template_body(PipelineConfig(), bootstrap=True)
    with pytest.raises(DeployError, match="BucketName"):
        changeset.apply(cfn, "bad", body, {"Prefix": "bad"}, changeset.Waiting(0.05, 30))
    assert changeset.describe_stack(cfn, "bad") is None
    nothing_created(cloud)


def test_a_failure_after_the_stack_was_created_rolls_it_all_back(
        cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Deployer) -> dict:
        raise DeployError("packaging failed")

    monkeypatch.setattr(Deployer, "stage_code", broken)
    with pytest.raises(DeployError, match="packaging failed"):
        deploy(cloud)
    nothing_created(cloud)  # the bootstrap stack and its bucket are gone again


def test_a_bucket_that_exists_is_reported_and_left_alone(cloud: LocalCloud) -> None:
    s3 = cloud.boto3_client("s3")
    s3.create_bucket(Bucket="bad-artifacts")
    s3.put_object(Bucket="bad-artifacts", Key="theirs", Body=b"keep me")
    with pytest.raises(DeployError, match="create of stack bad failed"):
        deploy(cloud)
    assert changeset.describe_stack(cloud.boto3_client("cloudformation"), "bad") is None
    assert s3.get_object(Bucket="bad-artifacts", Key="theirs")["Body"].read() == b"keep me"
    s3.delete_object(Bucket="bad-artifacts", Key="theirs")
    s3.delete_bucket(Bucket="bad-artifacts")


def test_cli_exits_non_zero_with_the_message(cloud: LocalCloud, tmp_path: Path) -> None:
    result = CliRunner().invoke(stepml(), ["deploy", "--local", "--endpoint-url", cloud.url],
                                env={"STEPML_BUCKET": "Not_A_Bucket", "STEPML_CONFIG":
                                     str(tmp_path / "none.toml")})
    assert result.exit_code == 1
    assert "invalid bucket name 'Not_A_Bucket'" in result.output
    assert "Traceback" not in result.output
    nothing_created(cloud)
