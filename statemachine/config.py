"""One configuration for the pipeline: defaults < config file < environment < CLI flags.

The same object names the AWS resources, parameterises the state machine and supplies the
defaults that ValidateInput applies to an execution's input.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "STEPML_"
CONFIG_FILE_ENV = "STEPML_CONFIG"
DEFAULT_CONFIG_FILE = "stepml.toml"
DLAMI_PYTORCH_PARAMETER = ("/aws/service/deeplearning/ami/x86_64/"
                           "oss-nvidia-driver-gpu-pytorch-2.13-amazon-linux-2023/latest/ami-id")


def _training_hyperparameters() -> dict[str, Any]:
    from training.config import defaults

    return {
        "arch": defaults.arch,
        "image-size": defaults.image_size,
        "epochs": defaults.epochs,
        "lr": defaults.lr,
        "batch-size": defaults.batch_size,
        "patience": defaults.patience,
        "seed": defaults.seed,
    }


@dataclass
class PipelineConfig:
    # names and places
    prefix: str = "stepml"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    bucket: str = "stepml-artifacts"
    dataset_prefix: str = "datasets/"
    model_prefix: str = "models/"
    # training
    training_backend: str = "sagemaker"
    # Backbone weights: torchvision's ImageNet weights (downloaded inside the job), "none", or an
    # s3:// URI of a weights file (given to the job as its "weights" channel: works without network).
    # Unset: "imagenet" on AWS, "none" on the local cloud, whose jobs have no network.
    training_weights: str = ""
    training_instance_type: str = "ml.c5.xlarge"
    training_instance_count: int = 1
    training_max_wait_seconds: int = 3600
    training_image_uri: str = ""  # empty: resolved from the SageMaker SDK's PyTorch image
    ec2_instance_type: str = "c5.2xlarge"  # compute-optimised: the backbone is CPU-bound
    # An AWS Deep Learning AMI with PyTorch, resolved through its public SSM parameter
    # (/aws/service/deeplearning/ami/$architecture/$ami_type/latest/ami-id, ami_type = the AMI's
    # name less "deep", "learning", "ami"): https://docs.aws.amazon.com/dlami/latest/devguide/find-dlami-id.html
    # "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.13 (Amazon Linux 2023)", x86_64, PyTorch in
    # /opt/pytorch, gp3 root: https://docs.amazonaws.cn/dlami/latest/devguide/aws-deep-learning-ami-gpupt213oss-al2023-2026-10-05.md
    # The user data installs nothing: on an AMI without /opt/pytorch the run fails fast.
    ec2_ami_parameter: str = DLAMI_PYTORCH_PARAMETER
    ec2_ami_id: str = ""  # set to pin an AMI instead of resolving the SSM parameter
    # Root volume (gp3, deleted with the instance): at least this, and at least the AMI's snapshot
    # size (DescribeImages) + 20 GiB of scratch: the dataset copy, checkpoints, model and logs.
    ec2_root_volume_gb: int = 100
    hyperparameters: dict[str, Any] = field(default_factory=_training_hyperparameters)
    # hosting
    endpoint_name: str = "stepml-classifier"
    endpoint_instance_type: str = "ml.c5.large"
    endpoint_instance_count: int = 1
    endpoint_max_wait_seconds: int = 1800  # CheckEndpoint's deadline for Creating/Updating
    autoscaling_min: int = 1
    autoscaling_max: int = 2
    autoscaling_target: float = 50.0  # invocations per instance per minute
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60
    # registry and evaluation gate: the candidate goes live only if its test accuracy is at least
    # the live model's (same test split) + gate_min_improvement, and at least gate_min_accuracy
    gate_min_improvement: float = 0.0
    gate_min_accuracy: float = -1.0  # below 0: unset (no floor)
    # guarded rollout of an update (SageMaker DeploymentConfig: blue/green, canary, auto-rollback)
    rollout_canary_percent: int = 25  # of the new fleet's capacity, and of traffic (≤ 50)
    rollout_wait_seconds: int = 300  # baking period with the canary live (WaitIntervalInSeconds)
    rollout_termination_wait_seconds: int = 0  # old fleet kept after the full shift
    rollout_alarm_period_seconds: int = 60  # SageMaker's endpoint metrics are per minute
    rollout_max_errors: int = 1  # new-fleet 5xx/ModelError count in one period that rolls back
    rollout_max_latency_ms: int = 2000  # new-fleet average ModelLatency that rolls back
    # predict Lambda
    reserved_concurrency: int = 100
    provisioned_concurrency: int = 80
    # orchestration
    poll_seconds: int = 30
    handler_timeout_seconds: int = 60
    # local cloud: the account it emulates ("default", or "new": a new AWS account's quotas)
    local_account_profile: str = "default"

    # -- derived names ----------------------------------------------------------------------
    def function_name(self, state_module: str) -> str:
        return f"{self.prefix}-{state_module.replace('_', '-')}"

    def function_arn(self, state_module: str) -> str:
        return (f"arn:aws:lambda:{self.region}:{self.account_id}:function:"
                f"{self.function_name(state_module)}")

    @property
    def state_machine_name(self) -> str:
        return f"{self.prefix}-pipeline"

    @property
    def state_machine_arn(self) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{self.state_machine_name}"

    def role_arn(self, role: str) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.prefix}-{role}"

    @property
    def model_package_group(self) -> str:
        """The stack's one SageMaker Model Package Group: every run registers a version in it."""
        return f"{self.prefix}-models"

    @property
    def training_request_key(self) -> str:
        return f"{self.prefix}/config/training_request.json"

    def execution_defaults(self) -> dict[str, Any]:
        """What ValidateInput fills in when an execution's input leaves a field out."""
        return {
            "bucket": self.bucket,
            "model_prefix": self.model_prefix,
            "training": {
                "backend": self.training_backend,
                "instance_type": self.training_instance_type,
                "instance_count": self.training_instance_count,
                "ec2_instance_type": self.ec2_instance_type,
                "max_wait_seconds": self.training_max_wait_seconds,
                "weights": self.training_weights or "imagenet",
                "hyperparameters": dict(self.hyperparameters),
            },
            "endpoint": {
                "name": self.endpoint_name,
                "instance_type": self.endpoint_instance_type,
                "instance_count": self.endpoint_instance_count,
                "max_wait_seconds": self.endpoint_max_wait_seconds,
            },
            "autoscaling": {
                "min": self.autoscaling_min,
                "max": self.autoscaling_max,
                "target": self.autoscaling_target,
                "scale_in_cooldown": self.scale_in_cooldown_seconds,
                "scale_out_cooldown": self.scale_out_cooldown_seconds,
            },
            "predict": {
                "reserved_concurrency": self.reserved_concurrency,
                "provisioned_concurrency": self.provisioned_concurrency,
            },
            "gate": {
                "min_improvement": self.gate_min_improvement,
                "min_accuracy": self.gate_min_accuracy if self.gate_min_accuracy >= 0 else None,
            },
            "rollout": {
                "canary_percent": self.rollout_canary_percent,
                "wait_seconds": self.rollout_wait_seconds,
                "termination_wait_seconds": self.rollout_termination_wait_seconds,
                "alarm_period_seconds": self.rollout_alarm_period_seconds,
                "max_errors": self.rollout_max_errors,
                "max_latency_ms": self.rollout_max_latency_ms,
            },
            "poll_seconds": self.poll_seconds,
        }

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **overrides: Any) -> PipelineConfig:
        """Defaults, then the TOML file, then STEPML_* environment, then explicit overrides."""
        values: dict[str, Any] = {}
        file = Path(path or os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        if file.exists():
            values.update(tomllib.loads(file.read_text()).get("stepml", {}))
        values.update(_from_environment())
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        config = cls()
        for name, value in values.items():
            setattr(config, name, _coerce(getattr(config, name), value, name))
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_environment() -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    found = {}
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX):].lower() in names:
            found[key[len(ENV_PREFIX):].lower()] = value
    return found


def _coerce(current: Any, value: Any, name: str) -> Any:
    """Environment values are strings; convert them to the type of the default."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            return value.lower() in ("1", "true", "yes")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, dict):
            return json.loads(value)
    except ValueError as error:
        raise ValueError(f"config {name}: cannot read {value!r}: {error}") from error
    return value
