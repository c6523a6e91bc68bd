"""End to end on the local cloud: the deployed state machine trains for real (SageMaker job or
EC2 instance, or tuning first), serves from a real endpoint, and answers a smoke prediction; a
failing training run ends in Fail via Cleanup and leaves nothing running. IAM enforcement is on
(the local cloud's default) and every process runs as its role; the last tests measure least
privilege over these runs and confirm it with real removals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud
from infra_scripts.localcloud.iam import least_privilege
from infra_scripts.run import execution_input, make_sample_dataset, start_execution
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = PipelineConfig(provisioned_concurrency=4, reserved_concurrency=10)
    with LocalCloud() as cloud:
        deployer = Deployer.for_local_cloud(config, cloud.url)
        deployed = deployer.deploy()
        data = make_sample_dataset(Path(tmp_path_factory.mktemp("sample")))
        dataset_uri = upload_dataset(deployer.client("s3"), config.bucket, data, "sample")
        yield cloud, deployer, deployed, dataset_uri


def run_execution(stack, document: dict, name: str) -> tuple[dict, dict]:
    _, deployer, deployed, _ = stack
    # These runs test the training paths; the gate (tests/e2e/test_registry_rollout.py) must not
    # reject a later run whose accuracy merely ties or dips on the same sample data.
    document = {"gate": {"min_improvement": -1.0}, **document}
    sfn = deployer.client("stepfunctions")
    arn = start_execution(sfn, deployed.state_machine_arn, document, name=name)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described, json.loads(described.get("output") or "{}")
        time.sleep(0.5)
    raise AssertionError(f"{arn} still running")


@pytest.mark.parametrize("backend", ["sagemaker", "ec2"])
def test_pipeline_reaches_succeed_with_a_correct_smoke_prediction(stack, backend):
    _, deployer, _, dataset_uri = stack
    described, output = run_execution(stack, execution_input(dataset_uri, backend, local=True),
                                      name=f"e2e-{backend}")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert output["training_job"]["backend"] == backend
    assert float(output["training_job"]["metrics"]["test_acc"]) >= 0.9
    assert output["endpoint"]["status"] == "InService"
    assert output["smoke_test"]["correct"] is True
    sagemaker = deployer.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=output["endpoint"]["name"])
    assert endpoint["EndpointConfigName"] == output["endpoint_config"]["name"]
    targets = deployer.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 2)]
    alias = deployer.client("lambda").get_alias(FunctionName=output["predict"]["function"], Name="live")
    assert alias["FunctionVersion"] == output["predict"]["version"]


def test_failing_training_ends_in_fail_via_cleanup_leaving_nothing_running(stack):
    cloud, deployer, _, dataset_uri = stack
    document = execution_input(dataset_uri, "sagemaker", local=True)
    document["training"]["hyperparameters"] = {"lr": 0}  # passes ValidateInput (>= 0), not training
    described, _ = run_execution(stack, document, name="e2e-failing")
    assert described["status"] == "FAILED"
    assert described["error"] == "TrainingFailed"
    sfn = deployer.client("stepfunctions")
    entered = [e["stateEnteredEventDetails"]["name"] for e in
               sfn.get_execution_history(executionArn=described["executionArn"],
                                         maxResults=1000)["events"]
               if "stateEnteredEventDetails" in e]
    assert entered[-2:] == ["Cleanup", "PipelineFailed"]
    sagemaker = deployer.client("sagemaker")
    running = sagemaker.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
    assert running == []
    failed_input = json.loads(described["input"])
    assert failed_input["training"]["hyperparameters"] == {"lr": 0}
    models = [m["ModelName"] for m in sagemaker.list_models()["Models"]]
    configs = [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]]
    assert not [name for name in models + configs if name.startswith("e2e-failing")]
    reservations = deployer.client("ec2").describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    assert reservations == []


def test_tuning_path_with_no_reserved_concurrency_reaches_succeed(stack):
    """HPO first (two trials), then training with the best; reserved concurrency 0 removes the
    predict function's reservation (DeleteFunctionConcurrency)."""
    _, deployer, _, dataset_uri = stack
    document = execution_input(dataset_uri, "sagemaker", local=True)
    document["tuning"] = {"max_jobs": 2, "max_parallel_jobs": 2}
    document["predict"] = {"reserved_concurrency": 0, "provisioned_concurrency": 0}
    described, output = run_execution(stack, document, name="e2e-tuning")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert output["tuning_job"]["best_job"]
    assert output["smoke_test"]["correct"] is True


# -- least privilege, measured over the runs above ----------------------------------------------
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_every_allow_statement_is_the_only_one_allowing_some_request(stack):
    """Every statement × action of every role alone allowed at least one request of the runs
    above (both backends, the tuning path, the failure path through Cleanup), so removing it
    makes that request fail with AccessDenied in the state named in the table; the only
    exceptions are what AWS's services do with the role and the local cloud does directly
    (least_privilege.SERVICE_SIDE). Runs after the pipelines of this module (pytest keeps file
    order)."""
    cloud, deployer, _, _ = stack
    decisions = cloud.extensions["iam.enforcement"].decisions
    executions = deployer.client("stepfunctions").list_executions(
        stateMachineArn=stack[2].state_machine_arn)["executions"]
    assert {e["name"] for e in executions} >= {"e2e-sagemaker", "e2e-ec2", "e2e-failing",
                                               "e2e-tuning"}, "run the whole module"
    assert not [d for d in decisions if not d.allowed], "a request of a passing run was denied"
    rows = least_privilege.needs(deployer.config, decisions)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "least-privilege.md").write_text(least_privilege.markdown(rows))
    assert [(r.role, r.sid, r.action) for r in least_privilege.unneeded(rows)] == []


def history_failure(deployer: Deployer, execution_arn: str) -> tuple[str, str]:
    """(the state whose Task failed first, its error cause)."""
    events = deployer.client("stepfunctions").get_execution_history(
        executionArn=execution_arn, maxResults=1000)["events"]
    state = ""
    for event in events:
        if "stateEnteredEventDetails" in event:
            state = event["stateEnteredEventDetails"]["name"]
        for key in ("lambdaFunctionFailedEventDetails", "taskFailedEventDetails"):
            if key in event:
                return state, event[key].get("cause", "")
    raise AssertionError("no Task failed")


REMOVALS = [  # (role key, statement Sid, the state that must fail with AccessDenied)
    ("state-machine", "InvokeOwnTaskFunctions", "ValidateInput"),
    ("handlers-training", "ListDatasets", "ValidateInput"),
    ("handlers-training", "PassSageMakerRoleToSageMaker", "StartSageMakerTraining"),
]


@pytest.mark.parametrize(("key", "sid", "state"), REMOVALS, ids=[r[1] for r in REMOVALS])
def test_removing_a_statement_fails_its_state_with_access_denied(stack, key, sid, state):
    """Real removal runs confirming rows of the table: the deployed role without that one
    statement, the same execution input as the passing run."""
    _, deployer, _, dataset_uri = stack
    iam, role = deployer.client("iam"), f"{deployer.config.prefix}-{key}"
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    reduced = {**document, "Statement": [s for s in document["Statement"] if s["Sid"] != sid]}
    assert len(reduced["Statement"]) == len(document["Statement"]) - 1
    if reduced["Statement"]:
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(reduced))
    else:  # a policy needs a statement: without its only one the role has no policy at all
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    try:
        described, _ = run_execution(stack, execution_input(dataset_uri, "sagemaker", local=True),
                                     name=f"e2e-without-{sid}")
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    assert described["status"] == "FAILED"
    failed_state, cause = history_failure(deployer, described["executionArn"])
    assert failed_state == state
    assert "AccessDenied" in cause, cause
