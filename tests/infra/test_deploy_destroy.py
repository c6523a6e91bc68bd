"""deploy → (an execution, and what runs create) → destroy on the local cloud: the stack comes
from the template by change set, a second deploy changes nothing, and destroy leaves no
function, state machine, endpoint, endpoint config, model, running job, instance, autoscaling
target or provisioned concurrency behind (each listed and counted), while leaving other
people's resources alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from infra_scripts import packaging, policies
from infra_scripts.cfn.teardown import run_id_of
from infra_scripts.commands import infra_cli
from infra_scripts.deploy import Deployer, DeployResult
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.packaging import tar_gz as tar
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS
from tests.localcloud.test_sagemaker_endpoints import (
    create_config,
    standin_options,
    wait_until_settled,
    write_standin,
)

pytestmark = pytest.mark.timeout(300)

EXTENSIONS = [f"infra_scripts.localcloud.{name}" for name in (
    "awslambda.runtime", "awslambda.provisioned", "sagemaker.endpoints", "autoscaling.controller",
    "sagemaker.training", "ec2.instances", "awslambda.limits", "servicequotas.quotas",
    "sagemaker.registry", "cloudwatch.metrics")]
CONFIG = PipelineConfig(prefix="proof", bucket="proof-artifacts", endpoint_name="proof-endpoint")
EXECUTION = "destroy-proof"
SLEEPER = "#!/bin/bash\n# localcloud: runnable\nsleep 300\n"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    script = write_standin(Path(tmp_path_factory.mktemp("standin")))
    settings = LocalCloudSettings(options={"sagemaker_endpoints": standin_options(script),
                                           "autoscaling": {"period_s": 3600}})
    with LocalCloud(settings=settings, extensions=EXTENSIONS) as running:
        yield running


@pytest.fixture(scope="module")
def deployer(cloud: LocalCloud) -> Deployer:
    return Deployer.for_local_cloud(CONFIG, cloud.url, upload_trigger=True)  # as `stepml deploy`


@pytest.fixture(scope="module")
def deployed(deployer: Deployer) -> DeployResult:
    return deployer.deploy()


def stepml() -> Any:
    from infra_scripts.cli import main

    if "deploy" not in main.commands:  # until the lead lists infra_cli in COMMAND_MODULES
        infra_cli.register(main)
    return main


def cli(cloud: LocalCloud, tmp_path: Path, *arguments: str) -> Any:
    main = stepml()
    config = tmp_path / "stepml.toml"
    config.write_text("[stepml]\n" + "".join(f'{k} = "{v}"\n' for k, v in {
        "prefix": CONFIG.prefix, "bucket": CONFIG.bucket,
        "endpoint_name": CONFIG.endpoint_name}.items()))
    return CliRunner().invoke(main, ["--config", str(config), *arguments, "--local",
                                     "--endpoint-url", cloud.url], catch_exceptions=False)


# -- deploy ---------------------------------------------------------------------------------------

def test_deploy_builds_the_stack_from_the_template(deployer: Deployer,
                                                   deployed: DeployResult) -> None:
    stack = deployer.client("cloudformation").describe_stacks(StackName="proof")["Stacks"][0]
    assert stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    names = {f["FunctionName"] for f in deployer.client("lambda").list_functions()["Functions"]}
    assert names == set(deployed.functions) and len(names) == len(TASK_HANDLERS) + 2
    machine = deployer.client("stepfunctions").describe_state_machine(
        stateMachineArn=deployed.state_machine_arn)
    assert machine["roleArn"].endswith(":role/proof-state-machine")
    assert deployed.outputs["PredictFunctionName"] == "proof-predict"
    assert deployed.outputs["EndpointName"] == "proof-endpoint"


def test_deployed_roles_carry_exactly_the_linted_policies(deployer: Deployer,
                                                          deployed: DeployResult) -> None:
    iam, expected = deployer.client("iam"), policies.concrete_policies(CONFIG)
    for key, document in expected.items():
        name = f"proof-{key}"
        [policy_name] = iam.list_role_policies(RoleName=name)["PolicyNames"]
        actual = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        assert actual == document, key
    profile = iam.get_instance_profile(InstanceProfileName="proof-ec2-training")
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == ["proof-ec2-training"]


def test_bucket_log_groups_and_upload_rule_are_configured(cloud: LocalCloud, deployer: Deployer,
                                                          deployed: DeployResult) -> None:
    s3 = deployer.client("s3")
    assert all(s3.get_public_access_block(Bucket=CONFIG.bucket)[
        "PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_versioning(Bucket=CONFIG.bucket)["Status"] == "Enabled"
    assert s3.get_bucket_encryption(Bucket=CONFIG.bucket)["ServerSideEncryptionConfiguration"]
    # moto stores EventBridgeConfiguration but its GET does not return it: read the backend.
    bucket = cloud.backend("s3", "aws").get_bucket(CONFIG.bucket)
    assert bucket.notification_configuration.event_bridge is not None
    groups = deployer.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/proof-")
    assert {g["retentionInDays"] for g in groups["logGroups"]} == {30}
    assert len(groups["logGroups"]) == len(deployed.functions)
    events = deployer.client("events")
    pattern = json.loads(events.describe_rule(Name="proof-dataset-ready")["EventPattern"])
    assert pattern["detail"]["bucket"]["name"] == [CONFIG.bucket]
    assert events.describe_rule(Name="proof-dataset-ready")["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule="proof-dataset-ready")["Targets"]
    assert target["Arn"].endswith(":function:proof-on-upload")
    sqs = deployer.client("sqs")  # the upload function's dead-letter queue
    url = sqs.get_queue_url(QueueName="proof-on-upload-dlq")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (queue["MessageRetentionPeriod"], queue["SqsManagedSseEnabled"]) == ("1209600", "true")


LAYER_NAME = "proof-handler-dependencies"


def code_sha256(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_every_function_runs_with_the_dependencies_layer(deployer: Deployer,
                                                         deployed: DeployResult) -> None:
    lam = deployer.client("lambda")
    [version] = lam.list_layer_versions(LayerName=LAYER_NAME)["LayerVersions"]
    layer = lam.get_layer_version(LayerName=LAYER_NAME, VersionNumber=version["Version"])
    assert layer["Content"]["CodeSha256"] == code_sha256(packaging.handler_dependencies_layer())
    assert layer["CompatibleRuntimes"] == ["python3.11"]
    assert layer["CompatibleArchitectures"] == ["x86_64"]
    for name in deployed.functions:
        configuration = lam.get_function_configuration(FunctionName=name)
        assert [item["Arn"] for item in configuration["Layers"]] == [layer["LayerVersionArn"]], name
        assert configuration["CodeSha256"] == code_sha256(packaging.handlers_zip()), name
        assert configuration["Architectures"] == ["x86_64"], name


def deployed_code(deployer: Deployer, functions: list[str]) -> dict[str, Any]:
    """What a redeploy of an unchanged tree must leave exactly as it was."""
    lam, s3 = deployer.client("lambda"), deployer.client("s3")
    configurations = [lam.get_function_configuration(FunctionName=name) for name in functions]
    return {
        "functions": {c["FunctionName"]: (c["CodeSha256"], [item["Arn"] for item in c["Layers"]])
                      for c in configurations},
        "layer versions": [v["LayerVersionArn"] for v in lam.list_layer_versions(
            LayerName=LAYER_NAME)["LayerVersions"]],
        "code keys": sorted(o["Key"] for o in s3.list_objects_v2(
            Bucket=CONFIG.bucket, Prefix="proof/code/")["Contents"]),
    }


def test_second_deploy_with_no_changes_says_so(cloud: LocalCloud, deployer: Deployer,
                                               deployed: DeployResult, tmp_path: Path) -> None:
    before = deployed_code(deployer, deployed.functions)
    result = cli(cloud, tmp_path, "deploy")
    assert result.exit_code == 0, result.output
    assert "No changes: stack proof is up to date." in result.output
    assert "uploaded" not in result.output
    assert cloud.credentials["AWS_SECRET_ACCESS_KEY"] not in result.output  # never a credential
    assert cloud.credentials["AWS_ACCESS_KEY_ID"] not in result.output
    assert deployed_code(deployer, deployed.functions) == before
    assert len(before["layer versions"]) == 1
    assert any("/handler-dependencies-" in key for key in before["code keys"])


def test_a_changed_layer_is_a_new_version_and_the_old_one_goes(
        deployer: Deployer, deployed: DeployResult, monkeypatch: pytest.MonkeyPatch) -> None:
    """As CloudFormation replaces a LayerVersion whose content changed."""
    original = deployed_code(deployer, deployed.functions)
    changed = packaging.deterministic_zip([("python/changed.py", b"", 0o644)])
    monkeypatch.setattr(packaging, "handler_dependencies_layer", lambda: changed)
    assert deployer.deploy().changed
    after = deployed_code(deployer, deployed.functions)
    [arn] = after["layer versions"]
    assert arn != original["layer versions"][0]
    assert all(layers == [arn] for _, layers in after["functions"].values())
    monkeypatch.undo()
    deployer.deploy()
    [restored] = deployed_code(deployer, deployed.functions)["layer versions"]
    layer = deployer.client("lambda").get_layer_version(  # moto lacks GetLayerVersionByArn
        LayerName=LAYER_NAME, VersionNumber=int(restored.rsplit(":", 1)[1]))
    assert layer["Content"]["CodeSha256"] == code_sha256(packaging.handler_dependencies_layer())


# -- what executions create, then destroy ---------------------------------------------------------

def run_failing_execution(deployer: Deployer, arn: str) -> dict:
    sfn = deployer.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, name=EXECUTION, input=json.dumps(
        {"dataset": f"s3://{CONFIG.bucket}/datasets/none/", "poll_seconds": 0}))["executionArn"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError("the execution did not finish")


def create_run_resources(cloud: LocalCloud, deployer: Deployer, run_id: str) -> None:
    """What a run leaves behind: hosting, autoscaling, a running job, an instance, a live alias
    with provisioned concurrency; plus someone else's model and instance."""
    sagemaker, s3 = deployer.client("sagemaker"), deployer.client("s3")
    create_config(cloud, run_id, {"version": "v1"})
    sagemaker.create_endpoint(EndpointName=CONFIG.endpoint_name, EndpointConfigName=run_id,
                              Tags=[{"Key": "stepml:run-id", "Value": run_id}])
    create_config(cloud, "someone-else", {"version": "x"})
    s3.put_object(Bucket=CONFIG.bucket, Key="code/sleep.tar.gz",
                  Body=tar({"sleep.sh": b"sleep 300\n"}))
    s3.put_object(Bucket=CONFIG.bucket, Key="datasets/d/train/a", Body=b"a")
    sagemaker.create_training_job(
        TrainingJobName=run_id[:63], RoleArn=deployed_role(deployer),
        AlgorithmSpecification={"TrainingImage": "local", "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"sleep.sh"', "sagemaker_submit_directory":
                         f'"s3://{CONFIG.bucket}/code/sleep.tar.gz"'},
        InputDataConfig=[{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{CONFIG.bucket}/datasets/d/"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{CONFIG.bucket}/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
        Tags=[{"Key": "stepml:run-id", "Value": run_id}])
    ec2 = deployer.client("ec2")
    for tags in ([{"Key": "stepml:run-id", "Value": run_id}], [{"Key": "owner", "Value": "x"}]):
        ec2.run_instances(ImageId="ami-0d27e0fb3bac4d724", InstanceType="c5.large", MinCount=1,
                          MaxCount=1, UserData=SLEEPER, TagSpecifications=[
                              {"ResourceType": "instance", "Tags": tags}])
    assert wait_until_settled(cloud, CONFIG.endpoint_name)["EndpointStatus"] == "InService"
    deployer.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{CONFIG.endpoint_name}/variant/"
        "AllTraffic", ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1, MaxCapacity=2)
    lam = deployer.client("lambda")
    version = lam.publish_version(FunctionName="proof-predict")["Version"]
    lam.create_alias(FunctionName="proof-predict", Name="live", FunctionVersion=version)
    lam.put_provisioned_concurrency_config(FunctionName="proof-predict", Qualifier="live",
                                           ProvisionedConcurrentExecutions=1)


def deployed_role(deployer: Deployer) -> str:
    return deployer.client("iam").get_role(RoleName="proof-sagemaker")["Role"]["Arn"]


def leftovers(deployer: Deployer, run_id: str) -> dict[str, list[str]]:
    """Everything of ours that costs or clutters, by kind (the test's own inventory)."""
    sm, ec2, lam = deployer.client("sagemaker"), deployer.client("ec2"), deployer.client("lambda")
    live = ec2.describe_instances(Filters=[
        {"Name": "tag:stepml:run-id", "Values": [run_id]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    jobs = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]
            if j["TrainingJobStatus"] in ("InProgress", "Stopping")]
    return {
        "functions": [f["FunctionName"] for f in lam.list_functions()["Functions"]
                      if f["FunctionName"].startswith("proof-")],
        "state machines": [m["name"] for m in deployer.client("stepfunctions").list_state_machines()[
            "stateMachines"] if m["name"].startswith("proof-")],
        "endpoints": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]],
        "endpoint configs": [c["EndpointConfigName"] for c in sm.list_endpoint_configs()[
            "EndpointConfigs"] if c["EndpointConfigName"] != "someone-else"],
        "models": [m["ModelName"] for m in sm.list_models()["Models"]
                   if m["ModelName"] != "someone-else"],
        "running training jobs": jobs,
        "instances": [i["InstanceId"] for r in live["Reservations"] for i in r["Instances"]],
        "autoscaling targets": [t["ResourceId"] for t in deployer.client(
            "application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker")["ScalableTargets"]],
        "stacks": [s["StackName"] for s in deployer.client("cloudformation").list_stacks()[
            "StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"],
        "layer versions": [v["LayerVersionArn"] for v in lam.list_layer_versions(
            LayerName=LAYER_NAME)["LayerVersions"]],
    }


def test_destroy_removes_the_stack_and_everything_runs_made(
        cloud: LocalCloud, deployer: Deployer, deployed: DeployResult, tmp_path: Path) -> None:
    described = run_failing_execution(deployer, deployed.state_machine_arn)
    assert described["status"] == "FAILED" and described["error"] == "InvalidInput"
    run_id = run_id_of(EXECUTION)
    create_run_resources(cloud, deployer, run_id)
    before = leftovers(deployer, run_id)
    assert {kind: len(found) for kind, found in before.items()} == {
        "functions": 18, "state machines": 1, "endpoints": 1, "endpoint configs": 1, "models": 1,
        "running training jobs": 1, "instances": 1, "autoscaling targets": 1, "stacks": 1,
        "layer versions": 1}

    plan = deployer.teardown_plan()
    kinds = [item.kind for item in plan.items]
    assert kinds == ["training job", "EC2 instance", "autoscaling target", "endpoint",
                     "endpoint config", "model", "provisioned concurrency", "state machine",
                     "layer version", "stack"], kinds
    result = cli(cloud, tmp_path, "destroy", "--yes")
    assert result.exit_code == 0, result.output
    assert "Destroyed: 10 resources." in result.output

    after = leftovers(deployer, run_id)
    assert after == {kind: [] for kind in before}, after
    assert not deployer.client("sqs").list_queues(QueueNamePrefix="proof-").get("QueueUrls")
    sm = deployer.client("sagemaker")
    assert sm.describe_model(ModelName="someone-else")  # not ours: left alone
    others = deployer.client("ec2").describe_instances(Filters=[
        {"Name": "tag:owner", "Values": ["x"]}])["Reservations"][0]["Instances"]
    assert others[0]["State"]["Name"] == "running"
    assert "bucket proof-artifacts is kept" in result.output


def test_destroy_with_delete_data_then_nothing_left(cloud: LocalCloud, deployer: Deployer,
                                                   tmp_path: Path) -> None:
    result = cli(cloud, tmp_path, "destroy", "--yes", "--delete-data")
    assert result.exit_code == 0, result.output
    with pytest.raises(ClientError):
        deployer.client("s3").head_bucket(Bucket=CONFIG.bucket)
    again = cli(cloud, tmp_path, "destroy")  # no --yes: nothing to ask about
    assert again.exit_code == 0, again.output
    assert "stack proof does not exist" in again.output and "Nothing to delete." in again.output


def test_destroy_asks_first_and_aborts_without_yes(cloud: LocalCloud, tmp_path: Path) -> None:
    admin = cloud.boto3_client("s3")
    admin.create_bucket(Bucket=CONFIG.bucket)
    result = CliRunner().invoke(stepml(), ["destroy", "--delete-data", "--local", "--endpoint-url",
                                       cloud.url], input="n\n", env={
        "STEPML_PREFIX": "proof", "STEPML_BUCKET": CONFIG.bucket})
    assert result.exit_code == 1 and "Delete these 1 resources?" in result.output
    assert admin.head_bucket(Bucket=CONFIG.bucket)
    admin.delete_bucket(Bucket=CONFIG.bucket)

