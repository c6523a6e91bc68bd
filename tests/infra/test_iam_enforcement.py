"""Least privilege proved on the local cloud with IAM enforcement switched on: credentials of
the stack's roles (STS AssumeRole, or an IAM user holding exactly the role's policy) against
real endpoints and functions, authorized with the real resource ARNs.

The roles get the very documents the template deploys (``policies.concrete_policies``);
``test_deploy_destroy`` checks the deployed roles carry exactly those documents.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts import policies
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from statemachine.config import PipelineConfig
from tests.localcloud.test_sagemaker_endpoints import (
    create_config,
    standin_options,
    wait_until_settled,
    write_standin,
)

ENFORCEMENT = "infra_scripts.localcloud.iam.enforcement"
EXTENSIONS = [ENFORCEMENT, "infra_scripts.localcloud.awslambda.runtime",
              "infra_scripts.localcloud.sagemaker.endpoints"]
CONFIG = PipelineConfig(endpoint_name="endpoint-a", bucket="stepml-enforced")
OTHER_ENDPOINT, OTHER_BUCKET, OUTSIDE_FUNCTION = "endpoint-b", "someone-elses-data", "intruder"
OWN_FUNCTION = CONFIG.function_name("validate_input")
TRUSTED = {"predict": "lambda.amazonaws.com", "state-machine": "states.amazonaws.com",
           "handlers-training": "lambda.amazonaws.com", "handlers-hosting": "lambda.amazonaws.com",
           "ec2-training": "ec2.amazonaws.com", "sagemaker": "sagemaker.amazonaws.com"}


def admin(cloud: LocalCloud, service: str) -> Any:
    return cloud.boto3_client(service, config=Config(retries={"max_attempts": 1}))


def as_credentials(cloud: LocalCloud, service: str, credentials: dict[str, str]) -> Any:
    return boto3.client(service, endpoint_url=cloud.url, region_name=cloud.region,
                        config=Config(retries={"max_attempts": 1}), **credentials)


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {'ran': True}\n")
    return buffer.getvalue()


def create_role(cloud: LocalCloud, key: str) -> str:
    """The stack's role ``key`` with exactly the policy the template gives it."""
    iam, name = admin(cloud, "iam"), f"{CONFIG.prefix}-{key}"
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        pass
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        policies.trust(TRUSTED[key])))["Role"]["Arn"]
    document = policies.concrete_policies(CONFIG, cloud.account_id)[key]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    return arn


def assumed(cloud: LocalCloud, role_arn: str) -> dict[str, str]:
    found = admin(cloud, "sts").assume_role(RoleArn=role_arn, RoleSessionName="proof")
    c = found["Credentials"]
    return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"]}


def user_with_policy_of(cloud: LocalCloud, key: str) -> dict[str, str]:
    iam, name = admin(cloud, "iam"), f"holds-{key}"
    iam.create_user(UserName=name)
    document = policies.concrete_policies(CONFIG, cloud.account_id)[key]
    iam.put_user_policy(UserName=name, PolicyName=key, PolicyDocument=json.dumps(document))
    key_pair = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key_pair["AccessKeyId"],
            "aws_secret_access_key": key_pair["SecretAccessKey"]}


def denied(call: Any, **arguments: Any) -> dict:
    with pytest.raises(ClientError) as caught:
        call(**arguments)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403, error
    assert error["Error"]["Code"] in ("AccessDeniedException", "AccessDenied",
                                      "UnauthorizedOperation"), error
    return error


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    script = write_standin(Path(tmp_path_factory.mktemp("standin")))
    settings = LocalCloudSettings(options={"iam": {"enforce": True},
                                           "sagemaker_endpoints": standin_options(script)})
    with LocalCloud(settings=settings, extensions=EXTENSIONS) as running:
        sagemaker = admin(running, "sagemaker")
        for name in (CONFIG.endpoint_name, OTHER_ENDPOINT):
            create_config(running, name, {"version": name})
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        s3 = admin(running, "s3")
        for bucket in (CONFIG.bucket, OTHER_BUCKET):
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="datasets/x/test/a.png", Body=b"secret")
        lam, role = admin(running, "lambda"), admin(running, "iam").create_role(
            RoleName="function-role", AssumeRolePolicyDocument=json.dumps(
                policies.trust("lambda.amazonaws.com")))["Role"]["Arn"]
        for name in (OWN_FUNCTION, OUTSIDE_FUNCTION):
            lam.create_function(FunctionName=name, Runtime="python3.11", Handler="index.handler",
                                Role=role, Code={"ZipFile": function_zip()})
        for name in (CONFIG.endpoint_name, OTHER_ENDPOINT):
            assert wait_until_settled(running, name)["EndpointStatus"] == "InService"
        yield running


@pytest.fixture(scope="module", params=["assumed-role", "user-with-the-policy"])
def predict(request: pytest.FixtureRequest, cloud: LocalCloud) -> dict[str, str]:
    if request.param == "assumed-role":
        return assumed(cloud, create_role(cloud, "predict"))
    return user_with_policy_of(cloud, "predict")


def invoke_endpoint(client: Any, name: str) -> dict:
    response = client.invoke_endpoint(EndpointName=name, Body=b"{}",
                                       ContentType="application/json")
    return json.loads(response["Body"].read())


def test_predict_role_invokes_exactly_its_endpoint(cloud: LocalCloud, predict: dict) -> None:
    runtime = as_credentials(cloud, "sagemaker-runtime", predict)
    assert invoke_endpoint(runtime, CONFIG.endpoint_name)["version"] == CONFIG.endpoint_name
    error = denied(runtime.invoke_endpoint, EndpointName=OTHER_ENDPOINT, Body=b"{}",
                   ContentType="application/json")
    assert f"endpoint/{OTHER_ENDPOINT}" in error["Error"]["Message"]


def test_predict_role_cannot_delete_or_even_describe_the_endpoint(cloud: LocalCloud,
                                                                    predict: dict) -> None:
    sagemaker = as_credentials(cloud, "sagemaker", predict)
    denied(sagemaker.delete_endpoint, EndpointName=CONFIG.endpoint_name)
    denied(sagemaker.describe_endpoint, EndpointName=CONFIG.endpoint_name)
    status = admin(cloud, "sagemaker").describe_endpoint(EndpointName=CONFIG.endpoint_name)
    assert status["EndpointStatus"] == "InService"  # the denied delete never reached it


def test_predict_role_reads_no_bucket(cloud: LocalCloud, predict: dict) -> None:
    s3 = as_credentials(cloud, "s3", predict)
    for bucket in (OTHER_BUCKET, CONFIG.bucket):
        denied(s3.get_object, Bucket=bucket, Key="datasets/x/test/a.png")
        denied(s3.list_objects_v2, Bucket=bucket)


def test_state_machine_role_invokes_only_its_own_functions(cloud: LocalCloud) -> None:
    lam = as_credentials(cloud, "lambda", assumed(cloud, create_role(cloud, "state-machine")))
    answer = lam.invoke(FunctionName=OWN_FUNCTION, Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == {"ran": True}
    error = denied(lam.invoke, FunctionName=OUTSIDE_FUNCTION, Payload=b"{}")
    assert f"function:{OUTSIDE_FUNCTION}" in error["Error"]["Message"]
    denied(lam.invoke, FunctionName=f"{OUTSIDE_FUNCTION}:live", Payload=b"{}")
    denied(lam.update_function_configuration, FunctionName=OWN_FUNCTION, Timeout=900)


def test_calls_it_cannot_name_are_denied_for_iam_principals(cloud: LocalCloud,
                                                            predict: dict) -> None:
    s3 = as_credentials(cloud, "s3", predict)
    denied(s3.get_bucket_acl, Bucket=OTHER_BUCKET)  # a sub-resource the table does not model
    denied(as_credentials(cloud, "ec2", predict).describe_instances)


def test_the_local_clouds_own_credentials_are_the_administrator(cloud: LocalCloud) -> None:
    runtime = admin(cloud, "sagemaker-runtime")
    assert invoke_endpoint(runtime, OTHER_ENDPOINT)["version"] == OTHER_ENDPOINT
    assert admin(cloud, "s3").get_object(Bucket=OTHER_BUCKET, Key="datasets/x/test/a.png")


def test_enforcement_off_lets_the_same_credentials_through(cloud: LocalCloud) -> None:
    enforcement = cloud.extensions["iam.enforcement"]
    credentials = assumed(cloud, f"arn:aws:iam::{cloud.account_id}:role/{CONFIG.prefix}-predict")
    runtime = as_credentials(cloud, "sagemaker-runtime", credentials)
    enforcement.enforce = False
    try:
        assert invoke_endpoint(runtime, OTHER_ENDPOINT)["version"] == OTHER_ENDPOINT
    finally:
        enforcement.enforce = True
    denied(runtime.invoke_endpoint, EndpointName=OTHER_ENDPOINT, Body=b"{}",
           ContentType="application/json")


def training_job_request(role_arn: str) -> dict[str, Any]:
    return {"TrainingJobName": "passes-a-role", "RoleArn": role_arn,
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": f"s3://{CONFIG.bucket}/models/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            "Tags": [{"Key": "stepml:run-id", "Value": "r1"}]}


def test_training_handlers_cannot_pass_any_other_role(cloud: LocalCloud) -> None:
    """iam:PassRole is checked with the call that passes the role (CreateTrainingJob's RoleArn),
    as AWS does: only the stack's SageMaker role, only to SageMaker."""
    training = assumed(cloud, create_role(cloud, "handlers-training"))
    sagemaker = as_credentials(cloud, "sagemaker", training)
    for other in (create_role(cloud, "predict"), create_role(cloud, "ec2-training")):
        error = denied(sagemaker.create_training_job, **training_job_request(other))
        assert "iam:PassRole" in error["Error"]["Message"] and other in error["Error"]["Message"]
    jobs = admin(cloud, "sagemaker").list_training_jobs()["TrainingJobSummaries"]
    names = [job["TrainingJobName"] for job in jobs]
    assert "passes-a-role" not in names


def test_handlers_cannot_touch_another_stacks_resources(cloud: LocalCloud) -> None:
    hosting = as_credentials(cloud, "sagemaker",
                             assumed(cloud, create_role(cloud, "handlers-hosting")))
    described = hosting.describe_endpoint(EndpointName=CONFIG.endpoint_name)
    assert described["EndpointStatus"] == "InService"
    denied(hosting.describe_endpoint, EndpointName=OTHER_ENDPOINT)
    denied(hosting.update_endpoint, EndpointName=OTHER_ENDPOINT,
           EndpointConfigName=CONFIG.endpoint_name)
    s3 = as_credentials(cloud, "s3", assumed(cloud, create_role(cloud, "handlers-training")))
    denied(s3.list_objects_v2, Bucket=OTHER_BUCKET, Prefix="datasets/")
    denied(s3.get_object, Bucket=OTHER_BUCKET, Key="datasets/x/test/a.png")


def test_an_instance_role_reads_its_stacks_datasets_and_no_other(cloud: LocalCloud) -> None:
    s3 = as_credentials(cloud, "s3", assumed(cloud, create_role(cloud, "ec2-training")))
    own = s3.get_object(Bucket=CONFIG.bucket, Key="datasets/x/test/a.png")["Body"].read()
    assert own == b"secret"
    denied(s3.get_object, Bucket=OTHER_BUCKET, Key="datasets/x/test/a.png")
    denied(s3.list_objects_v2, Bucket=CONFIG.bucket, Prefix="")  # s3:prefix outside its own
