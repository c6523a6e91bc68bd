"""Deploy-time checks of the configuration, before anything is created.

CloudFormation would reject most of these too, but only after a stack exists (and on the local
cloud, moto accepts much of it): checking first gives one clear message and nothing to undo.
"""

from __future__ import annotations

import ipaddress
import re

from statemachine.config import PipelineConfig


class DeployError(Exception):
    """Bad input or a failed step, worded for the person running the command."""


# Template parameter ← config key: a required parameter must not be empty.
REQUIRED = {"Prefix": "prefix", "BucketName": "bucket", "EndpointName": "endpoint_name",
            "DatasetPrefix": "dataset_prefix", "ModelPrefix": "model_prefix", "Region": "region"}
PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
ENDPOINT = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")  # lower case: the ARN in IAM is
KEY_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name (general purpose buckets), or None."""
    if not 3 <= len(name) <= 63:
        return "must be 3 to 63 characters long"
    if not BUCKET_CHARS.match(name):
        return ("may hold only lower-case letters, digits, dots and hyphens, and must begin "
                "and end with a letter or digit")
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold '..', '.-' or '-.'"
    try:
        ipaddress.IPv4Address(name)
        return "must not look like an IP address"
    except ValueError:
        pass
    if name.startswith(BUCKET_RESERVED_PREFIXES) or name.endswith(BUCKET_RESERVED_SUFFIXES):
        return "uses a prefix or suffix S3 reserves"
    return None


def _missing(config: PipelineConfig) -> list[str]:
    return [f"missing parameter {parameter}: set `{key}` in stepml.toml or STEPML_{key.upper()}"
            for parameter, key in REQUIRED.items() if not str(getattr(config, key)).strip()]


def _names(config: PipelineConfig) -> list[str]:
    problems = []
    if config.prefix and not PREFIX.match(config.prefix):
        problems.append(f"prefix {config.prefix!r} must match {PREFIX.pattern}")
    if config.bucket and (reason := bucket_name_problem(config.bucket)):
        problems.append(f"invalid bucket name {config.bucket!r}: it {reason}")
    if config.endpoint_name and not ENDPOINT.match(config.endpoint_name):
        problems.append(f"endpoint_name {config.endpoint_name!r} must match {ENDPOINT.pattern}")
    for key in ("dataset_prefix", "model_prefix"):
        value = getattr(config, key)
        if value and not KEY_PREFIX.match(value):
            problems.append(f"{key} {value!r} must be a key prefix ending in '/'")
    if config.ec2_ami_id and not AMI_ID.match(config.ec2_ami_id):
        problems.append(f"ec2_ami_id {config.ec2_ami_id!r} is not an AMI id (ami-…)")
    return problems


def _numbers(config: PipelineConfig) -> list[str]:
    problems = []
    if config.reserved_concurrency < 0:
        problems.append("reserved_concurrency must be at least 0 (0: none reserved)")
    if config.provisioned_concurrency < 0 or (
            config.reserved_concurrency and config.provisioned_concurrency > config.reserved_concurrency):
        problems.append("provisioned_concurrency must be between 0 and reserved_concurrency")
    if not 1 <= config.autoscaling_min <= config.autoscaling_max:
        problems.append("autoscaling_min must be at least 1 and at most autoscaling_max")
    if config.autoscaling_target <= 0:
        problems.append("autoscaling_target must be positive")
    return problems


def check_config(config: PipelineConfig) -> None:
    """Raise DeployError naming every problem; missing parameters first."""
    problems = _missing(config) + _names(config) + _numbers(config)
    if problems:
        raise DeployError("cannot deploy:\n  " + "\n  ".join(problems))
