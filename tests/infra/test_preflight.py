"""`stepml preflight` and `stepml cost` (issue 14) against the local cloud's account profiles:
a new account's limits fail with the exact fix, the documented adaptation passes, the default
profile passes, and `stepml deploy` stops before creating anything when preflight fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra_scripts import cost
from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.preflight import Preflight, failed
from statemachine.config import PipelineConfig

EXTENSIONS = ["infra_scripts.localcloud.awslambda.limits",
              "infra_scripts.localcloud.servicequotas.quotas"]


def start(profile: str) -> LocalCloud:
    return LocalCloud(settings=LocalCloudSettings(options={"account": {"profile": profile}}),
                      extensions=EXTENSIONS)


@pytest.fixture(scope="module")
def new_account() -> Iterator[LocalCloud]:
    with start("new") as cloud:
        yield cloud


@pytest.fixture(scope="module")
def default_account() -> Iterator[LocalCloud]:
    with start("default") as cloud:
        yield cloud


def checks(cloud: LocalCloud, **settings: object) -> dict[str, object]:
    deployer = Deployer.for_local_cloud(PipelineConfig(**settings), cloud.url)
    return {check.name: check for check in Preflight(deployer).run()}


def test_default_account_passes(default_account: LocalCloud) -> None:
    found = checks(default_account)
    assert [name for name, check in found.items() if not check.ok] == []
    assert {"identity", "Lambda concurrency (predict)", "PyTorch DLC (training)",
            "PyTorch DLC (inference)", "bucket", "config"} <= set(found)


def test_new_account_fails_with_the_exact_quota_requests(new_account: LocalCloud) -> None:
    found = checks(new_account)
    blocking = {check.name: check for check in failed(list(found.values()))}
    lam = blocking["Lambda concurrency (predict)"]
    assert "limit 10" in lam.found
    assert lam.fix.startswith("aws service-quotas request-service-quota-increase --service-code "
                              "lambda --quota-code L-B99A9384 --desired-value 200")
    assert "reserved_concurrency = 0 and provisioned_concurrency = 0" in lam.fix
    quotas = new_account.boto3_client("service-quotas").list_service_quotas(ServiceCode="sagemaker")
    code = {q["QuotaName"]: q["QuotaCode"] for q in quotas["Quotas"]}
    training = blocking["SageMaker 'ml.c5.xlarge for training job usage' (training)"]
    assert training.fix == ("aws service-quotas request-service-quota-increase --service-code "
                            f"sagemaker --quota-code {code['ml.c5.xlarge for training job usage']} "
                            "--desired-value 1")
    assert "SageMaker 'ml.c5.large for endpoint usage' (endpoint)" in blocking


def test_the_documented_adaptation_passes_lambdas_check(new_account: LocalCloud) -> None:
    adapted = checks(new_account, reserved_concurrency=0, provisioned_concurrency=0)
    assert adapted["Lambda concurrency (predict)"].ok


def test_cli_exits_non_zero_and_deploy_creates_nothing(new_account: LocalCloud, tmp_path: Path) -> None:
    from infra_scripts.cli import main

    env = {"STEPML_CONFIG": str(tmp_path / "none.toml")}
    result = CliRunner().invoke(main, ["preflight", "--local", "--endpoint-url", new_account.url], env=env)
    assert result.exit_code == 1, result.output
    assert "--quota-code L-B99A9384" in result.output and "cost preview" in result.output
    deployed = CliRunner().invoke(main, ["deploy", "--local", "--endpoint-url", new_account.url], env=env)
    assert deployed.exit_code == 1 and "preflight failed: nothing was created" in deployed.output
    assert new_account.boto3_client("s3").list_buckets()["Buckets"] == []
    stacks = new_account.boto3_client("cloudformation").list_stacks()["StackSummaries"]
    assert stacks == []


def test_cli_passes_on_the_default_account(default_account: LocalCloud, tmp_path: Path) -> None:
    from infra_scripts.cli import main

    result = CliRunner().invoke(main, ["preflight", "--local", "--endpoint-url", default_account.url],
                                env={"STEPML_CONFIG": str(tmp_path / "none.toml")})
    assert result.exit_code == 0, result.output


# -- cost preview ---------------------------------------------------------------------------------
def test_cost_lines_are_their_quantity_times_the_snapshot_price() -> None:
    config = PipelineConfig()
    prices = cost.SnapshotPrices("us-east-1")
    estimate = cost.estimate(config, prices, tuning_trials=4)
    lines = {line.item: line for line in estimate.lines}
    snapshot = json.loads((cost.PRICES_DIR / "us-east-1.json").read_text())
    training = snapshot["sagemaker_training_per_hour"]["ml.c5.xlarge"]
    assert lines["SageMaker training ml.c5.xlarge"].cost == pytest.approx(training * 1.0)
    assert lines["tuning trials ml.c5.xlarge"].cost == pytest.approx(4 * training)
    hosting = snapshot["sagemaker_hosting_per_hour"]["ml.c5.large"]
    assert lines["endpoint ml.c5.large at max"].cost == pytest.approx(2 * 730 * hosting)
    provisioned = 80 * 0.5 * 730 * 3600 * snapshot["lambda_provisioned_per_gb_second"]
    assert lines["predict provisioned concurrency"].cost == pytest.approx(provisioned)
    text = "\n".join(cost.render(estimate))
    assert "price snapshot of 2026-12-02" in text
    assert "dominated by: predict provisioned concurrency" in text  # 80 × 512 MB, around the clock


def test_price_list_documents_are_read_and_missing_ones_fall_back() -> None:
    dimension = {"pricePerUnit": {"USD": "0.2210000000"}, "unit": "Hrs"}
    product = {"terms": {"OnDemand": {"X": {"priceDimensions": {"Y": dimension}}}}}

    class PriceList:
        def __init__(self) -> None:
            self.filters: list = []

        def get_products(self, **request: object) -> dict:
            self.filters.append(request["Filters"])
            match = any(f["Value"] == "ml.c5.xlarge" for f in request["Filters"])
            return {"PriceList": [json.dumps(product)] if match else []}

    client = PriceList()
    prices = cost.PriceListPrices("us-east-1", client)
    assert prices.hourly("sagemaker_training_per_hour", "ml.c5.xlarge") == pytest.approx(0.221)
    assert prices.hourly("sagemaker_hosting_per_hour", "ml.c5.large") == pytest.approx(0.102)  # snapshot
    assert {"Type": "TERM_MATCH", "Field": "component", "Value": "Training"} in client.filters[0]
    assert "Price List API" in prices.source


def test_a_region_without_a_snapshot_says_so() -> None:
    with pytest.raises(LookupError, match="no price snapshot for eu-west-3"):
        cost.SnapshotPrices("eu-west-3")
