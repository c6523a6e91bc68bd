"""The registry, the evaluation gate and the guarded rollout, end to end on the local cloud.

In order, on one stack: the first run registers an Approved package with its lineage and report
and goes live; a run whose candidate cannot beat the live model by gate.min_improvement ends as
ModelRejected without touching the endpoint; a model whose every request fails is promoted while
a client keeps calling the predict function, and is rolled back automatically with 0 failed
requests; a second approved run updates the endpoint blue/green and `stepml rollback` brings the
first version back; autoscaling (max 2, target 50) and the predict function's concurrency stay as
they were through all of it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from handlers import registry as R
from handlers.common import split_s3_uri
from infra_scripts import model_registry
from infra_scripts.cli import main as cli
from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud
from infra_scripts.localcloud.iam import least_privilege
from infra_scripts.packaging import INFERENCE_ENTRY, tar_gz
from infra_scripts.run import LOCAL_ROLLOUT, execution_input, make_sample_dataset
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig
from tests.e2e.test_pipeline import run_execution

pytestmark = pytest.mark.timeout(1500)
CONFIG = PipelineConfig(provisioned_concurrency=4, reserved_concurrency=10)
SETTINGS = {**CONFIG.execution_defaults()["rollout"], **LOCAL_ROLLOUT}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalCloud() as cloud:
        deployer = Deployer.for_local_cloud(CONFIG, cloud.url)
        deployed = deployer.deploy()
        data = make_sample_dataset(Path(tmp_path_factory.mktemp("sample")))
        dataset_uri = upload_dataset(deployer.client("s3"), CONFIG.bucket, data, "sample")
        STATE["data"] = data
        yield cloud, deployer, deployed, dataset_uri


def versions(deployer: Deployer) -> dict[int, model_registry.Version]:
    found = model_registry.versions(deployer.client("sagemaker"), CONFIG.model_package_group,
                                    CONFIG.endpoint_name)
    return {v.version: v for v in found}


def seed_settings(deployer: Deployer) -> dict:
    """What must carry over through every update and rollback."""
    scaling = deployer.client("application-autoscaling")
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    function = CONFIG.function_name("predict")
    lam = deployer.client("lambda")
    reserved = lam.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions")
    provisioned = lam.get_provisioned_concurrency_config(FunctionName=function, Qualifier="live")
    return {"capacity": (target["MinCapacity"], target["MaxCapacity"]),
            "target": policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            "reserved": reserved, "provisioned": provisioned["RequestedProvisionedConcurrentExecutions"]}


def endpoint_config(deployer: Deployer) -> str:
    return deployer.client("sagemaker").describe_endpoint(EndpointName=CONFIG.endpoint_name)[
        "EndpointConfigName"]


def manifest(deployer: Deployer, dataset_uri: str) -> str:
    bucket, prefix = split_s3_uri(dataset_uri)
    listing = deployer.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    lines = sorted(f"{o['Key']}\t{o['ETag']}" for o in listing)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


STATE: dict = {}


def test_the_first_run_registers_an_approved_version_with_its_lineage_and_report(stack):
    _, deployer, _, dataset_uri = stack
    described, output = run_execution(stack, execution_input(dataset_uri, "sagemaker", local=True),
                                      name="reg-first")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    [first] = versions(deployer).values()
    assert (first.status, first.rollout, first.live) == ("Approved", "Live", True)
    assert first.reason.startswith("first model")
    assert first.model_data == output["training_job"]["model_artifact"]
    lineage = first.lineage
    assert lineage["dataset-uri"] == dataset_uri
    assert lineage["dataset-manifest-sha256"] == manifest(deployer, dataset_uri)
    assert lineage["training-job-arn"] == output["training_job"]["arn"]
    assert lineage["execution-arn"] == described["executionArn"]
    assert len(lineage["training-code-sha256"]) == len(lineage["inference-code-sha256"]) == 16
    assert first.hyperparameters["epochs"] == CONFIG.hyperparameters["epochs"]
    package = deployer.client("sagemaker").describe_model_package(ModelPackageName=first.arn)
    assert package["MetadataProperties"]["GeneratedBy"] == described["executionArn"]
    report = model_registry.evaluation_report(deployer.client("s3"), first)
    candidate = report["candidate"]
    assert candidate["accuracy"] == pytest.approx(first.accuracy, abs=1e-6)
    classes = report["test_split"]["classes"]
    assert set(candidate["per_class"]) == set(classes)
    assert all({"precision", "recall"} <= set(row) for row in candidate["per_class"].values())
    matrix = candidate["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == candidate["num_images"] == report["test_split"]["num_images"]
    assert report["baseline"] is None  # nothing was live
    STATE["first"] = first
    STATE["seed"] = seed_settings(deployer)
    assert STATE["seed"] == {"capacity": (1, 2), "target": 50.0, "reserved": 10, "provisioned": 4}


def test_a_candidate_that_does_not_beat_the_live_model_is_rejected_and_nothing_is_served(stack):
    _, deployer, _, dataset_uri = stack
    serving = endpoint_config(deployer)
    document = {**execution_input(dataset_uri, "sagemaker", local=True), "gate": {"min_improvement": 0.5}}
    described, _ = run_execution(stack, document, name="reg-rejected")
    assert described["status"] == "FAILED"
    assert described["error"] == "ModelRejected"
    cause = json.loads(json.loads(described["cause"])["errorMessage"])  # the Lambda error's message
    assert cause["decision"] == "Rejected" and cause["live_accuracy"] is not None
    assert cause["candidate_accuracy"] is not None and "min_improvement" in cause["reason"]
    assert endpoint_config(deployer) == serving
    rejected = versions(deployer)[2]
    assert rejected.status == "Rejected" and rejected.reason == cause["reason"]
    assert rejected.live_accuracy is not None  # the live model, scored on this run's test split
    sagemaker = deployer.client("sagemaker")
    models = [m["ModelName"] for m in sagemaker.list_models()["Models"]]
    assert not [name for name in models if name.startswith("reg-rejected")]
    events = deployer.client("stepfunctions").get_execution_history(
        executionArn=described["executionArn"], maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    assert "CreateModel" not in entered and entered[-2:] == ["Cleanup", "PipelineFailed"]
    assert seed_settings(deployer) == STATE["seed"]


def broken_copy(deployer: Deployer, model_data: str) -> str:
    """The live model with a serving program whose every prediction raises (a 500)."""
    bucket, key = split_s3_uri(model_data)
    s3 = deployer.client("s3")
    raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    files = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                files[member.name] = archive.extractfile(member).read()
    entry = next(name for name in files if name.endswith(f"code/{INFERENCE_ENTRY}"))
    files[entry] += b"\n\ndef predict_fn(data, model):\n    raise RuntimeError('broken on purpose')\n"
    broken = f"{CONFIG.model_prefix}broken/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=broken, Body=tar_gz(files))
    return f"s3://{bucket}/{broken}"


class PredictClient:
    """One caller of the predict function's live alias, serially, until stopped."""

    def __init__(self, deployer: Deployer, image: bytes) -> None:
        self.lam = deployer.client("lambda")
        self.payload = json.dumps({"image": base64.b64encode(image).decode()})
        self.answers: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            response = self.lam.invoke(FunctionName=f"{CONFIG.function_name('predict')}:live",
                                       Payload=self.payload)
            self.answers.append({"error": response.get("FunctionError"),
                                 **json.loads(response["Payload"].read())})

    def __enter__(self) -> PredictClient:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def failed(self) -> list[dict]:
        return [a for a in self.answers if a["error"] or a.get("statusCode") != 200]


def test_a_model_that_fails_every_request_is_rolled_back_with_no_failed_client_request(stack):
    _, deployer, _, _ = stack
    data = STATE["data"]
    first, sagemaker = STATE["first"], deployer.client("sagemaker")
    serving = endpoint_config(deployer)
    package = sagemaker.create_model_package(
        ModelPackageGroupName=CONFIG.model_package_group, ModelApprovalStatus="Approved",
        ModelPackageDescription="every prediction raises",
        InferenceSpecification={"Containers": [{"Image": first.image,
                                                "ModelDataUrl": broken_copy(deployer, first.model_data)}],
                                "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        CustomerMetadataProperties={R.RUN: "broken-on-purpose"})
    version = int(package["ModelPackageArn"].rsplit("/", 1)[-1])
    image = sorted(p for p in (data / "test").rglob("*") if p.is_file())[0].read_bytes()
    with PredictClient(deployer, image) as client:
        time.sleep(2)
        outcome = model_registry.promote(deployer, CONFIG.model_package_group, CONFIG.endpoint_name,
                                         version, SETTINGS, poll_s=0.5)
        time.sleep(2)
    assert outcome.rolled_back and CONFIG.endpoint_name + "-rollout-" in outcome.rolled_back
    assert len(client.answers) > 10
    assert client.failed() == []
    assert endpoint_config(deployer) == serving
    marked = versions(deployer)[version]
    assert (marked.status, marked.rollout) == ("Rejected", "RolledBack")
    assert "Rolled back" in marked.reason
    assert versions(deployer)[first.version].live
    assert seed_settings(deployer) == STATE["seed"]


def test_a_blue_green_update_and_a_rollback_keep_autoscaling_and_concurrency(stack):
    cloud, deployer, _, dataset_uri = stack
    document = {**execution_input(dataset_uri, "sagemaker", local=True), "gate": {"min_improvement": -1.0}}
    described, output = run_execution(stack, document, name="reg-second")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert output["endpoint"]["action"] == "updated"
    found = versions(deployer)
    second = next(v for v in found.values() if v.live)
    assert second.version != STATE["first"].version and second.rollout == "Live"
    assert found[STATE["first"].version].rollout == "Superseded"
    assert seed_settings(deployer) == STATE["seed"]

    runner = CliRunner()
    result = runner.invoke(cli, ["rollback", "--endpoint-url", cloud.url, "--wait-seconds", "2"],
                           env={"STEPML_PROVISIONED_CONCURRENCY": "4", "STEPML_RESERVED_CONCURRENCY": "10"})
    assert result.exit_code == 0, result.output
    assert f"version {STATE['first'].version} is live" in result.output
    found = versions(deployer)
    assert found[STATE["first"].version].live and found[STATE["first"].version].rollout == "Live"
    assert found[second.version].rollout == "Superseded"
    assert seed_settings(deployer) == STATE["seed"]
    listing = runner.invoke(cli, ["models", "--endpoint-url", cloud.url, "--json"])
    assert listing.exit_code == 0, listing.output
    live = [v["version"] for v in json.loads(listing.output) if v["live"]]
    assert live == [STATE["first"].version]


# Issue 13's statements (DescribeAlarms aside: SageMaker makes that call on AWS).
REGISTRY_AND_ROLLOUT = ("ReadTheLiveModelsConfig", "FindTheLiveModel", "TrackRolloutsInTheRegistry",
                        "RollbackAlarmsOfTheOneEndpoint")


def test_the_registry_and_rollout_statements_were_each_the_only_allow_of_some_request(stack):
    """Every action of the registry role and of the new training/hosting statements alone allowed
    some request of this module's runs (removing it would fail that request)."""
    cloud, deployer, _, _ = stack
    decisions = cloud.extensions["iam.enforcement"].decisions
    assert not [d for d in decisions if not d.allowed], "a request of a passing run was denied"
    rows = least_privilege.needs(CONFIG, decisions)
    ours = [r for r in rows if (r.role == "handlers-registry" or r.sid in REGISTRY_AND_ROLLOUT)
            and r.action != "cloudwatch:DescribeAlarms"]
    assert {r.sid for r in ours} >= set(REGISTRY_AND_ROLLOUT)
    assert [(r.role, r.sid, r.action) for r in ours if r.sole_requests == 0] == []
