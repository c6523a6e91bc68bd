"""Deploy the stack: the CloudFormation template from ``infra_scripts/cfn/template.py``, applied
by change set, on AWS and on the local cloud alike.

Steps: check the configuration and the region (AMI, inference image) before anything exists →
create the bootstrap stack (its bucket) if there is no stack → upload the code bundles and the
template, each under a content-addressed key (unchanged code uploads nothing) → create or update
the full stack by change set → on the local cloud, apply what moto's CloudFormation ignores
(``infra_scripts/cfn/local_gaps.py``). A deploy that created the stack and then fails removes
it again, bucket included, so nothing is left half-made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts import packaging
from infra_scripts.aws_clients import AwsClients
from infra_scripts.cfn import changeset, local_gaps
from infra_scripts.cfn.changeset import Applied, Waiting
from infra_scripts.cfn.template import (
    BOOTSTRAP_PARAMETERS,
    build_template,
    stack_name,
    template_body,
    template_json,
)
from infra_scripts.cfn.validation import DeployError, check_config
from infra_scripts.policies import ON_UPLOAD_MODULE, PREDICT_MODULE
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS

PYTORCH_VERSION = "2.5"  # newest PyTorch DLC the SageMaker SDK v2 knows with py311
PYTHON_VERSION = "py311"
LOG_RETENTION_DAYS = 30
Report = Callable[[str], None]

__all__ = ["Deployer", "DeployError", "DeployResult", "PREDICT_MODULE"]


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


def _digest(body: bytes) -> str:
    """Content address of a bundle (packaging builds them byte-deterministic)."""
    return hashlib.sha256(body).hexdigest()[:16]


def git_commit() -> str:
    """The deployed tree's commit for the registry's lineage; empty outside a git checkout."""
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = found.stdout.strip()
    return commit if found.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else ""


def _quiet(_: str) -> None:
    pass


@dataclass
class DeployResult:
    state_machine_arn: str
    functions: list[str]
    bucket: str
    outputs: dict[str, str] = field(default_factory=dict)
    changed: bool = True
    changes: list[str] = field(default_factory=list)


class Deployer:
    def __init__(self, config: PipelineConfig, clients: AwsClients | None = None,
                 report: Report = _quiet, trigger_input: dict | None = None,
                 upload_trigger: bool = False) -> None:
        self.clients = clients or AwsClients(fallback_region=config.region)
        self.session = self.clients.session
        self.config = dataclasses.replace(config, region=self.clients.region)
        self.endpoint_url = self.clients.endpoint_url
        self.report = report
        self.trigger_input = trigger_input or {}  # merged into upload-started executions
        # Off unless asked (`stepml deploy` asks): callers such as `stepml run` start their
        # execution themselves, and an enabled rule would start a second one on the marker.
        self.upload_trigger = upload_trigger
        self._account: str | None = None
        self._template: dict | None = None

    @classmethod
    def for_local_cloud(cls, config: PipelineConfig, endpoint_url: str, **options: Any) -> Deployer:
        # Local jobs are network-isolated: ImageNet weights would have to be in their torch cache.
        config = dataclasses.replace(config, training_weights=config.training_weights or "none")
        return cls(config, AwsClients.for_local_cloud(endpoint_url, config.region), **options)

    @classmethod
    def for_aws(cls, config: PipelineConfig, region: str | None = None,
                profile: str | None = None, **options: Any) -> Deployer:
        """Standard AWS resolution: --region, else AWS_DEFAULT_REGION/the profile's region, else config."""
        return cls(config, AwsClients(region, profile=profile, fallback_region=config.region), **options)

    # -- clients and facts ------------------------------------------------------------------
    @property
    def local(self) -> bool:
        return self.endpoint_url is not None

    @property
    def stack_name(self) -> str:
        return stack_name(self.config)

    @property
    def waiting(self) -> Waiting:
        return Waiting(poll_s=0.05, timeout_s=120) if self.local else Waiting()

    def client(self, service: str) -> Any:
        # One attempt on the local cloud's CloudFormation: moto applies a change set while
        # answering, so a retried execute would apply it twice.
        retries = {"max_attempts": 1} if self.local and service == "cloudformation" else None
        return self.clients.client(service, Config(retries=retries) if retries else None)

    def account_id(self) -> str:
        if self._account is None:
            self._account = self.client("sts").get_caller_identity()["Account"]
            self.config = dataclasses.replace(self.config, account_id=self._account)
        return self._account

    def partition(self) -> str:
        return self.clients.partition()

    # -- preflight ----------------------------------------------------------------------------
    def check_trigger_input(self) -> None:
        """What the upload trigger will start must pass the execution input's schema, with the
        dataset each upload adds; refused before anything is created."""
        from handlers.errors import InvalidInput
        from handlers.input_schema import check_input

        sample = f"s3://{self.config.bucket}/{self.config.dataset_prefix}sample/"
        try:
            check_input({**self.trigger_input, "dataset": sample})
        except InvalidInput as error:
            raise DeployError(f"trigger input: {error}") from None

    def check_ami(self) -> None:
        """The EC2 path needs an AMI in this region: pinned, or the SSM parameter must exist."""
        if self.config.ec2_ami_id:
            return
        try:
            self.client("ssm").get_parameter(Name=self.config.ec2_ami_parameter)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ParameterNotFound":
                raise
            raise DeployError(
                f"region {self.config.region} has no configured AMI: the SSM parameter "
                f"{self.config.ec2_ami_parameter} does not exist there; set ec2_ami_id or "
                "ec2_ami_parameter for this region") from error

    def inference_image(self) -> str:
        return self.dlc_image("inference", self.config.endpoint_instance_type)

    def dlc_image(self, scope: str, instance_type: str) -> str:
        """The PyTorch Deep Learning Container for ``scope`` (training/inference) in the region,
        from the SageMaker SDK's image table (no call)."""
        from sagemaker import image_uris

        try:
            return image_uris.retrieve("pytorch", self.config.region, version=PYTORCH_VERSION,
                                       py_version=PYTHON_VERSION, image_scope=scope,
                                       instance_type=instance_type)
        except ValueError as error:
            raise DeployError(f"no PyTorch {PYTORCH_VERSION} {scope} image for region "
                              f"{self.config.region}: {error}") from error

    # -- code bundles -------------------------------------------------------------------------
    def upload_once(self, key: str, body: bytes) -> str:
        """Put ``body`` at ``key`` unless it is there (keys are content-addressed)."""
        s3 = self.client("s3")
        try:
            s3.head_object(Bucket=self.config.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                raise
            s3.put_object(Bucket=self.config.bucket, Key=key, Body=body)
            self.report(f"uploaded s3://{self.config.bucket}/{key}")
        return key

    def _bundle(self, name: str, suffix: str, body: bytes) -> str:
        return self.upload_once(f"{self.config.prefix}/code/{name}-{_digest(body)}{suffix}", body)

    def stage_code(self) -> dict[str, str]:
        keys = {
            "HandlersCodeKey": self._bundle("handlers", ".zip", packaging.handlers_zip()),
            "HandlerDependenciesKey": self._bundle("handler-dependencies", ".zip",
                                                   packaging.handler_dependencies_layer()),
            "TrainingCodeKey": self._bundle("training", ".tar.gz", packaging.training_source()),
            "InferenceCodeKey": self._bundle("inference", ".tar.gz", packaging.inference_source()),
        }
        source = f"s3://{self.config.bucket}/{keys['TrainingCodeKey']}"
        role = f"arn:{self.partition()}:iam::{self.account_id()}:role/{self.config.prefix}-sagemaker"
        request = json.dumps(self.training_request_template(role, source), indent=1,
                             sort_keys=True).encode()
        keys["TrainingRequestKey"] = self._bundle("training-request", ".json", request)
        return keys

    def training_request_template(self, role_arn: str, source_uri: str) -> dict:
        """CreateTrainingJob request built by the SageMaker SDK's PyTorch estimator (script
        mode), the same ``training_config`` the Data Science SDK's TrainingStep uses. The source
        is already in S3, so the SDK uploads nothing."""
        os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        import sagemaker
        from sagemaker.pytorch import PyTorch
        from sagemaker.workflow.airflow import training_config

        from training.hpo import METRIC_DEFINITIONS

        with _endpoint_env(self.endpoint_url):
            session = sagemaker.Session(boto_session=self.session, default_bucket=self.config.bucket,
                                        sagemaker_client=self.client("sagemaker"))
            estimator = PyTorch(
                entry_point=packaging.TRAINING_ENTRY, source_dir=source_uri, role=role_arn,
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

    def template_url(self, body: str) -> str:
        key = self._bundle("template", ".json", body.encode())
        suffix = "amazonaws.com.cn" if self.config.region.startswith("cn-") else "amazonaws.com"
        return f"https://s3.{self.config.region}.{suffix}/{self.config.bucket}/{key}"

    # -- the stack ----------------------------------------------------------------------------
    def parameters(self, code: dict[str, str], image: str) -> dict[str, str]:
        c = self.config
        return {
            "Prefix": c.prefix, "BucketName": c.bucket, "EndpointName": c.endpoint_name,
            "DatasetPrefix": c.dataset_prefix, "ModelPrefix": c.model_prefix,
            "Ec2AmiParameter": c.ec2_ami_parameter, "Ec2AmiId": c.ec2_ami_id,
            "InferenceImageUri": image, **code,
            "ReservedConcurrency": str(c.reserved_concurrency),
            "ProvisionedConcurrency": str(c.provisioned_concurrency),
            "AutoscalingMin": str(c.autoscaling_min), "AutoscalingMax": str(c.autoscaling_max),
            "AutoscalingTarget": str(c.autoscaling_target),
            "LogRetentionDays": str(LOG_RETENTION_DAYS),
            "TriggerExecutionInput": json.dumps(self.trigger_input, sort_keys=True),
            "UploadTriggerState": "ENABLED" if self.upload_trigger else "DISABLED",
            "GitCommit": git_commit(),
        }

    def template(self) -> dict:
        """The full template; on the local cloud without the state machine (see local_gaps)."""
        if self._template is None:
            self._template = build_template(self.config)
        if self.local:
            return local_gaps.without_state_machine(self._template, self.state_machine_arn)
        return self._template

    @property
    def state_machine_arn(self) -> str:
        c = self.config
        return (f"arn:{self.partition()}:states:{c.region}:{self.account_id()}:stateMachine:"
                f"{c.state_machine_name}")

    def _bootstrap(self) -> bool:
        """Create the stack with its bucket alone if there is none; True if this call did."""
        cfn = self.client("cloudformation")
        stack = changeset.describe_stack(cfn, self.stack_name)
        if stack and stack["StackStatus"] not in changeset.REPLACEABLE:
            return False
        self.report(f"creating stack {self.stack_name} (first its bucket {self.config.bucket})")
        parameters = {"Prefix": self.config.prefix, "BucketName": self.config.bucket}
        assert tuple(parameters) == BOOTSTRAP_PARAMETERS
        # A failed create removes its stack; a bucket that already existed is not ours to touch.
        changeset.apply(cfn, self.stack_name, template_body(self.config, bootstrap=True),
                        parameters, self.waiting, self.report)
        return True

    def _apply_full(self, image: str) -> tuple[Applied, dict[str, str]]:
        parameters = self.parameters(self.stage_code(), image)
        template = self.template()
        if self.local:  # moto's CloudFormation cannot hold layer versions (local_gaps)
            template = local_gaps.with_published_layers(self.client, template,
                                                        self.values(parameters))
        body = template_json(template)
        self.report(f"change set for stack {self.stack_name}")
        applied = changeset.apply(self.client("cloudformation"), self.stack_name, body,
                                  parameters, self.waiting, self.report, self.template_url(body))
        return applied, parameters

    def values(self, parameters: dict[str, str]) -> dict[str, str]:
        """What the template's intrinsics resolve to on this stack (for local_gaps)."""
        c, partition, account = self.config, self.partition(), self.account_id()
        found = {**parameters, "AWS::Region": c.region, "AWS::AccountId": account,
                 "AWS::Partition": partition, "AWS::StackName": self.stack_name,
                 "StateMachine": self.state_machine_arn}
        resources = changeset.stack_resources(self.client("cloudformation"), self.stack_name)
        for logical_id, (kind, physical) in resources.items():
            found[logical_id] = physical
            if kind == "AWS::IAM::Role":
                found[f"{logical_id}.Arn"] = f"arn:{partition}:iam::{account}:role/{physical}"
            if kind == "AWS::Lambda::Function":
                found[f"{logical_id}.Arn"] = (f"arn:{partition}:lambda:{c.region}:{account}:"
                                              f"function:{physical}")
        return found

    def _apply_local_gaps(self, applied: Applied, parameters: dict[str, str]) -> Applied:
        values = self.values(parameters)
        template = build_template(self.config) if self._template is None else self._template
        changes = local_gaps.apply(self.client, template, values, self.state_machine_arn)
        if changes:
            applied.changed = True
            applied.changes += changes
        applied.outputs = local_gaps.outputs(template, values)
        return applied

    def _delete_stack_quietly(self) -> None:
        try:
            changeset.delete_stack(self.client("cloudformation"), self.stack_name, self.waiting)
        except (DeployError, ClientError) as error:
            self.report(f"could not remove stack {self.stack_name}: {error}")

    def _undo_create(self) -> None:
        """Roll back a stack this deploy created: the stack, then its (retained) bucket."""
        from infra_scripts.cfn.teardown import empty_and_delete_bucket

        self.report(f"rolling back: removing stack {self.stack_name} and bucket {self.config.bucket}")
        self._delete_stack_quietly()
        empty_and_delete_bucket(self.client("s3"), self.config.bucket)

    def deploy(self) -> DeployResult:
        check_config(self.config)
        self.check_trigger_input()
        self.account_id()
        self.check_ami()
        image = self.inference_image()
        created = self._bootstrap()
        try:
            applied, parameters = self._apply_full(image)
            if self.local:
                applied = self._apply_local_gaps(applied, parameters)
        except Exception:
            if created:
                self._undo_create()
            raise
        if not applied.changed:
            self.report(f"no changes: stack {self.stack_name} is up to date")
        return self.result(applied)

    def teardown_plan(self, delete_data: bool = False) -> Any:
        """What ``stepml destroy`` would delete (``infra_scripts/cfn/teardown.py``)."""
        from infra_scripts.cfn.teardown import Planner

        c = self.config
        facts = {"prefix": c.prefix, "bucket": c.bucket, "endpoint": c.endpoint_name,
                 "region": c.region, "account": self.account_id(), "partition": self.partition()}
        return Planner(self.client, self.stack_name, facts, self.waiting).plan(delete_data)

    def result(self, applied: Applied) -> DeployResult:
        modules = [*TASK_HANDLERS.values(), PREDICT_MODULE, ON_UPLOAD_MODULE]
        return DeployResult(
            state_machine_arn=applied.outputs.get("StateMachineArn", self.state_machine_arn),
            functions=[self.config.function_name(m) for m in modules], bucket=self.config.bucket,
            outputs=applied.outputs, changed=applied.changed, changes=applied.changes)
