"""Deploy the stack with plain boto3 calls: bucket, roles, code bundles, Lambda functions and
the state machine. Every step is create-or-update, so deploying twice changes nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra_scripts import packaging, policies
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS, definition_json

PREDICT_MODULE = "predict"
PYTORCH_VERSION = "2.5"  # newest PyTorch DLC the SageMaker SDK v2 knows with py311
PYTHON_VERSION = "py311"


@contextmanager
def _endpoint_env(endpoint_url: str | None) -> Iterator[None]:
    """The SageMaker SDK builds its own clients; botocore's AWS_ENDPOINT_URL reaches them."""
    previous = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous


@dataclass
class DeployResult:
    state_machine_arn: str
    functions: list[str]
    bucket: str
    outputs: dict[str, str] = field(default_factory=dict)


class Deployer:
    def __init__(self, config: PipelineConfig, session: boto3.Session | None = None,
                 endpoint_url: str | None = None) -> None:
        self.config = config
        self.session = session or boto3.Session(region_name=config.region)
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}

    @classmethod
    def for_local_cloud(cls, config: PipelineConfig, endpoint_url: str) -> Deployer:
        from infra_scripts.localcloud.server import LOCAL_CREDENTIALS

        session = boto3.Session(aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                region_name=config.region)
        return cls(config, session=session, endpoint_url=endpoint_url)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, region_name=self.config.region, endpoint_url=self.endpoint_url)
        return self._clients[service]

    # -- pieces ---------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        s3 = self.client("s3")
        try:
            s3.head_bucket(Bucket=self.config.bucket)
        except ClientError:
            extra = ({} if self.config.region == "us-east-1" else
                     {"CreateBucketConfiguration": {"LocationConstraint": self.config.region}})
            s3.create_bucket(Bucket=self.config.bucket, **extra)
        s3.put_public_access_block(Bucket=self.config.bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True})

    def ensure_roles(self) -> dict[str, str]:
        iam, arns = self.client("iam"), {}
        for suffix, (service, build_policy) in policies.ROLES.items():
            name = f"{self.config.prefix}-{suffix}"
            try:
                arns[suffix] = iam.get_role(RoleName=name)["Role"]["Arn"]
            except iam.exceptions.NoSuchEntityException:
                arns[suffix] = iam.create_role(
                    RoleName=name, AssumeRolePolicyDocument=json.dumps(policies.trust(service)),
                    Tags=[{"Key": "stepml:stack", "Value": self.config.prefix}])["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy",
                                PolicyDocument=json.dumps(build_policy(self.config)))
        self._ensure_instance_profile()
        return arns

    def _ensure_instance_profile(self) -> None:
        iam, name = self.client("iam"), f"{self.config.prefix}-ec2-training"
        try:
            iam.get_instance_profile(InstanceProfileName=name)
        except iam.exceptions.NoSuchEntityException:
            iam.create_instance_profile(InstanceProfileName=name)
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)

    def upload(self, key: str, body: bytes) -> str:
        self.client("s3").put_object(Bucket=self.config.bucket, Key=key, Body=body)
        return f"s3://{self.config.bucket}/{key}"

    def upload_code(self, sagemaker_role_arn: str) -> dict[str, str]:
        prefix = f"{self.config.prefix}/code"
        template = self.training_request_template(sagemaker_role_arn)
        return {
            "TRAINING_REQUEST_URI": self.upload(self.config.training_request_key,
                                                json.dumps(template, indent=1).encode()),
            "EC2_CODE_URI": self.upload(f"{prefix}/training.tar.gz", packaging.training_source()),
            "INFERENCE_SOURCE_URI": self.upload(f"{prefix}/inference/sourcedir.tar.gz",
                                                packaging.inference_source()),
        }

    def training_request_template(self, role_arn: str) -> dict:
        """CreateTrainingJob request built by the SageMaker SDK's PyTorch estimator (script
        mode), the same ``training_config`` the Data Science SDK's TrainingStep uses."""
        os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        import sagemaker
        from sagemaker.pytorch import PyTorch
        from sagemaker.workflow.airflow import training_config
        from training.hpo import METRIC_DEFINITIONS

        with tempfile.TemporaryDirectory() as source, _endpoint_env(self.endpoint_url):
            session = sagemaker.Session(boto_session=self.session, default_bucket=self.config.bucket,
                                        sagemaker_client=self.client("sagemaker"))
            packaging.write_training_source_dir(Path(source))
            estimator = PyTorch(
                entry_point=packaging.TRAINING_ENTRY, source_dir=source, role=role_arn,
                framework_version=PYTORCH_VERSION, py_version=PYTHON_VERSION,
                instance_type=self.config.training_instance_type,
                instance_count=self.config.training_instance_count,
                output_path=f"s3://{self.config.bucket}/{self.config.model_prefix}",
                code_location=f"s3://{self.config.bucket}/{self.config.prefix}/code",
                metric_definitions=METRIC_DEFINITIONS, sagemaker_session=session,
                image_uri=self.config.training_image_uri or None,
            )
            return training_config(estimator, inputs=f"s3://{self.config.bucket}/"
                                   f"{self.config.dataset_prefix}", job_name="training-template")

    def inference_image(self) -> str:
        from sagemaker import image_uris

        return image_uris.retrieve("pytorch", self.config.region, version=PYTORCH_VERSION,
                                   py_version=PYTHON_VERSION, image_scope="inference",
                                   instance_type=self.config.endpoint_instance_type)

    def handler_environment(self, roles: dict[str, str], code: dict[str, str]) -> dict[str, str]:
        return {
            "EXECUTION_DEFAULTS": json.dumps(self.config.execution_defaults()),
            "SAGEMAKER_ROLE_ARN": roles["sagemaker"],
            "INFERENCE_IMAGE_URI": self.inference_image(),
            "INFERENCE_PROGRAM": packaging.INFERENCE_ENTRY,
            "EC2_INSTANCE_PROFILE": f"{self.config.prefix}-ec2-training",
            "EC2_AMI_PARAMETER": self.config.ec2_ami_parameter,
            "EC2_AMI_ID": self.config.ec2_ami_id,
            "PREDICT_FUNCTION_NAME": self.config.function_name(PREDICT_MODULE),
            "POWERTOOLS_SERVICE_NAME": self.config.prefix,
            **code,
        }

    def ensure_function(self, module: str, role_arn: str, environment: dict[str, str],
                        package: bytes, timeout: int) -> str:
        lam, name = self.client("lambda"), self.config.function_name(module)
        settings = dict(Role=role_arn, Handler=f"handlers.{module}.handler", Runtime="python3.11",
                        Timeout=timeout, MemorySize=512, Environment={"Variables": environment})
        try:
            lam.get_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            lam.create_function(FunctionName=name, Code={"ZipFile": package}, Publish=False,
                                Tags={"stepml:stack": self.config.prefix}, **settings)
            return name
        lam.update_function_code(FunctionName=name, ZipFile=package)
        self._wait_updated(name)
        lam.update_function_configuration(FunctionName=name, **settings)
        self._wait_updated(name)
        return name

    def _wait_updated(self, name: str) -> None:
        lam = self.client("lambda")
        for _ in range(60):
            if lam.get_function_configuration(FunctionName=name).get("LastUpdateStatus") in (
                    None, "Successful", "Failed"):
                return
            time.sleep(1)

    def ensure_state_machine(self, role_arn: str) -> str:
        sfn, definition = self.client("stepfunctions"), definition_json(self.config)
        try:
            sfn.describe_state_machine(stateMachineArn=self.config.state_machine_arn)
        except sfn.exceptions.StateMachineDoesNotExist:
            return sfn.create_state_machine(
                name=self.config.state_machine_name, definition=definition, roleArn=role_arn,
                tags=[{"key": "stepml:stack", "value": self.config.prefix}])["stateMachineArn"]
        sfn.update_state_machine(stateMachineArn=self.config.state_machine_arn,
                                 definition=definition, roleArn=role_arn)
        return self.config.state_machine_arn

    # -- the whole stack ------------------------------------------------------------------
    def deploy(self) -> DeployResult:
        self.ensure_bucket()
        roles = self.ensure_roles()
        code = self.upload_code(roles["sagemaker"])
        environment = self.handler_environment(roles, code)
        package = packaging.handlers_zip()
        timeout = self.config.handler_timeout_seconds
        functions = [self.ensure_function(module, roles["handlers"], environment, package, timeout)
                     for module in TASK_HANDLERS.values()]
        functions.append(self.ensure_function(
            PREDICT_MODULE, roles["predict"], {"ENDPOINT_NAME": self.config.endpoint_name,
                                               "POWERTOOLS_SERVICE_NAME": f"{self.config.prefix}-predict"},
            package, 30))
        arn = self.ensure_state_machine(roles["state-machine"])
        return DeployResult(state_machine_arn=arn, functions=functions, bucket=self.config.bucket,
                            outputs={"StateMachineArn": arn, "Bucket": self.config.bucket, **code})
