"""Account profiles on the local cloud (issue 14): a new AWS account's quotas, listed through
Service Quotas and enforced with AWS's own error codes and wording; the default profile keeps
today's generous limits. Sources are cited in infra_scripts/localcloud/core/accounts.py."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings

EXTENSIONS = ["infra_scripts.localcloud.awslambda.limits",
              "infra_scripts.localcloud.servicequotas.quotas"]
ROLE = "arn:aws:iam::123456789012:role/any"


def cloud_with(profile: str) -> LocalCloud:
    return LocalCloud(settings=LocalCloudSettings(options={"account": {"profile": profile}}),
                      extensions=EXTENSIONS)


@pytest.fixture(scope="module")
def new_account() -> Iterator[LocalCloud]:
    with cloud_with("new") as cloud:
        yield cloud


@pytest.fixture(scope="module")
def default_account() -> Iterator[LocalCloud]:
    with cloud_with("default") as cloud:
        yield cloud


def quotas(cloud: LocalCloud, service: str) -> dict[str, dict]:
    pages = cloud.boto3_client("service-quotas").get_paginator("list_service_quotas").paginate(
        ServiceCode=service)
    return {q["QuotaName"]: q for page in pages for q in page["Quotas"]}


def training_request(name: str, instance_type: str = "ml.c5.xlarge", count: int = 1) -> dict:
    return {"TrainingJobName": name, "RoleArn": ROLE,
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
            "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}}


def zipped_handler() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def test_new_account_lists_zero_sagemaker_instance_quotas_and_lambda_10(new_account: LocalCloud) -> None:
    sagemaker = quotas(new_account, "sagemaker")
    assert sagemaker["ml.c5.xlarge for training job usage"]["Value"] == 0
    assert sagemaker["ml.c5.large for endpoint usage"]["Value"] == 0
    assert sagemaker["Number of instances across all training jobs"]["Value"] == 4
    code = sagemaker["ml.c5.xlarge for training job usage"]["QuotaCode"]
    got = new_account.boto3_client("service-quotas").get_service_quota(ServiceCode="sagemaker",
                                                                       QuotaCode=code)
    assert got["Quota"]["QuotaName"] == "ml.c5.xlarge for training job usage"
    assert quotas(new_account, "lambda")["Concurrent executions"]["QuotaCode"] == "L-B99A9384"
    limits = new_account.boto3_client("lambda").get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == 10


def test_new_account_refuses_training_with_awss_wording_and_creates_nothing(
        new_account: LocalCloud) -> None:
    sagemaker = new_account.boto3_client("sagemaker")
    with pytest.raises(ClientError) as refused:
        sagemaker.create_training_job(**training_request("quota-job"))
    error = refused.value.response["Error"]
    assert error["Code"] == "ResourceLimitExceeded"
    assert error["Message"].startswith(
        "The account-level service limit 'ml.c5.xlarge for training job usage' is 0 Instances, "
        "with current utilization of 0 Instances and a request delta of 1 Instances.")
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_new_account_refuses_an_endpoint_past_its_quota(new_account: LocalCloud) -> None:
    sagemaker = new_account.boto3_client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
        "InstanceType": "ml.c5.large"}])
    with pytest.raises(ClientError, match="'ml.c5.large for endpoint usage' is 0 Instances"):
        sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="c")
    assert sagemaker.list_endpoints()["Endpoints"] == []


def test_new_account_cannot_reserve_any_concurrency(new_account: LocalCloud) -> None:
    import json

    role = new_account.boto3_client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    lam = new_account.boto3_client("lambda")
    lam.create_function(FunctionName="f", Runtime="python3.11", Role=role, Handler="app.handler",
                        Code={"ZipFile": zipped_handler()})
    with pytest.raises(ClientError, match=r"below its minimum value of \[10\]"):
        lam.put_function_concurrency(FunctionName="f", ReservedConcurrentExecutions=1)


def test_default_account_keeps_generous_limits(default_account: LocalCloud) -> None:
    assert quotas(default_account, "sagemaker")["ml.c5.xlarge for training job usage"]["Value"] == 20
    assert default_account.boto3_client("lambda").get_account_settings()[
        "AccountLimit"]["ConcurrentExecutions"] == 1000
    sagemaker = default_account.boto3_client("sagemaker")
    sagemaker.create_training_job(**training_request("fits"))
    with pytest.raises(ClientError, match="request delta of 21 Instances"):
        sagemaker.create_training_job(**training_request("too-big", count=21))


def test_an_unknown_profile_fails_the_start() -> None:
    with pytest.raises(ValueError, match="unknown account profile 'old'"):
        cloud_with("old").start()
