"""The operator side's one session factory (issue 14): deploy, run, executions and the console
resolve region and credentials the same way."""

from __future__ import annotations

import pytest

from infra_scripts import executions
from infra_scripts.aws_clients import AwsClients, NoLocalCredentials, local_credentials
from infra_scripts.deploy import Deployer
from statemachine.config import PipelineConfig

LOCAL = "http://127.0.0.1:4566"


@pytest.fixture
def bare_shell(monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.MonkeyPatch:
    """No region, credentials or profile in the environment or in ~/.aws."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_region_explicit_then_environment_then_config(bare_shell: pytest.MonkeyPatch) -> None:
    assert AwsClients(fallback_region="eu-west-1").region == "eu-west-1"
    bare_shell.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert AwsClients(fallback_region="eu-west-1").region == "ap-south-1"
    assert AwsClients("us-west-2", fallback_region="eu-west-1").region == "us-west-2"


def test_deployer_and_executions_agree_on_the_region(bare_shell: pytest.MonkeyPatch) -> None:
    config = PipelineConfig()
    assert Deployer.for_aws(config).config.region == executions.Clients().region == config.region
    bare_shell.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert Deployer.for_aws(config).config.region == executions.Clients().region == "eu-central-1"


def test_a_local_endpoint_signs_with_that_clouds_keys(bare_shell: pytest.MonkeyPatch) -> None:
    """Keys are made at each start (issue 12): a cloud this process started gives its own; for
    another one the exported lines `stepml local-cloud` printed; none is an error, not a guess."""
    from infra_scripts.localcloud.core.server import LocalCloud

    with pytest.raises(NoLocalCredentials, match="export the lines"):
        AwsClients(endpoint_url=LOCAL)
    assert AwsClients().session.get_credentials() is None  # AWS: never a local cloud's keys
    bare_shell.setenv("AWS_ACCESS_KEY_ID", "LKIAEXPORTED")
    bare_shell.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert AwsClients(endpoint_url=LOCAL).session.get_credentials().access_key == "LKIAEXPORTED"
    with LocalCloud(extensions=[]) as cloud:
        own = cloud.credentials["AWS_ACCESS_KEY_ID"]
        assert own.startswith("LKIA") and own != LocalCloud(extensions=[]).credentials["AWS_ACCESS_KEY_ID"]
        assert AwsClients(endpoint_url=cloud.url).session.get_credentials().access_key == own
        assert local_credentials(cloud.url.replace("127.0.0.1", "localhost"))["aws_access_key_id"] == own
        forced = AwsClients.for_local_cloud(cloud.url, "us-east-1")
        assert forced.client("sts").get_caller_identity()["Account"] == cloud.account_id


def test_clients_are_built_once_and_point_at_the_endpoint(bare_shell: pytest.MonkeyPatch) -> None:
    bare_shell.setenv("AWS_ACCESS_KEY_ID", "LKIAEXPORTED")
    bare_shell.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    clients = AwsClients("us-east-1", LOCAL)
    assert clients.client("s3") is clients.client("s3")
    assert clients.client("s3").meta.endpoint_url == LOCAL
    assert not clients.on_aws and AwsClients("us-east-1").on_aws
    deployer = Deployer.for_local_cloud(PipelineConfig(), LOCAL)
    assert deployer.client("sts").meta.endpoint_url == LOCAL and deployer.local
