"""What every handler shares: clients, deploy-time settings, logging, error translation."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from handlers.errors import TransientAwsError
from handlers.naming import RUN_TAG, run_of
from handlers.quotas import quota_exceeded

logger = Logger(service="stepml")

_TRANSIENT_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure", "InternalError",
    "RequestTimeout", "SlowDown",
}
# Handlers retry in the state machine with backoff, so the SDK's own retries stay short.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2})
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """A cached boto3 client; AWS_ENDPOINT_URL (botocore) points it at the local cloud."""
    if service not in _clients:
        _clients[service] = boto3.client(service, config=_CLIENT_CONFIG)
    return _clients[service]


def setting(name: str, default: str | None = None) -> str:
    """A deploy-time setting from the function's environment."""
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"function environment is missing {name}")
    return value


def json_setting(name: str) -> Any:
    return json.loads(setting(name, "{}"))


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def is_transient(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(error) in _TRANSIENT_CODES or status >= 500


def state_handler(function: Callable[[dict], dict]) -> Callable[[dict, Any], dict]:
    """Wrap a state's logic: structured logs, and throttling/5xx raised as TransientAwsError."""

    @wraps(function)
    @logger.inject_lambda_context(log_event=False)
    def handler(event: dict, context: Any) -> dict:
        try:
            return function(event)
        except ClientError as error:
            if is_transient(error):
                raise TransientAwsError(str(error)) from error
            quota = quota_exceeded(error)
            if quota is not None:
                raise quota from error
            raise

    return handler


def sagemaker_describe(operation: str, sagemaker: Any = None, **name: str) -> dict | None:
    """A SageMaker Describe* answer, or None when the resource does not exist (SageMaker says
    ValidationException for that)."""
    try:
        return getattr(sagemaker or client("sagemaker"), operation)(**name)
    except ClientError as error:
        if error_code(error) == "ValidationException":
            return None
        raise


def check_reusable(kind: str, name: str, arn: str, run_id: str, mismatch: str | None = None) -> None:
    """A run-scoped resource found by name is reused only if it is this run's (its RUN_TAG) and
    matches what this attempt would create; otherwise RequestRefused, never a silent reuse (which
    would serve another run's model)."""
    from handlers.errors import RequestRefused

    tags = client("sagemaker").list_tags(ResourceArn=arn).get("Tags", [])
    owner = run_of(tags)
    if owner != run_id:
        raise RequestRefused(f"{kind} {name} exists and is not this run's ({RUN_TAG} is {owner!r}, "
                             f"not {run_id!r}); use a new execution name")
    if mismatch:
        raise RequestRefused(f"{kind} {name} exists with {mismatch}; use a new execution name")


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ValueError(f"not an s3:// URI: {uri}")
    return match.group(1), match.group(2)


def training_hyperparameters(training: dict) -> dict:
    """What the training script is given: the run's hyperparameters and its backbone weights."""
    return {**training["hyperparameters"], "weights": training["weights"]}


def s3_channel(name: str, uri: str) -> dict:
    """A training job input channel copying everything under an S3 prefix (or one object)."""
    return {"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}


def weights_channel(training: dict) -> list[dict]:
    """An s3:// weights file as the job's "weights" channel: SageMaker copies it in, so a job
    without network access (network isolation) still gets it."""
    if not str(training["weights"]).startswith("s3://"):
        return []
    return [s3_channel("weights", training["weights"])]


def with_section(state: dict, name: str, values: dict) -> dict:
    """The execution document with one section added or extended."""
    return {**state, name: {**state.get(name, {}), **values}}
