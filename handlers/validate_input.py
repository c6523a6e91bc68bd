"""ValidateInput: apply deploy-time defaults, check every field, fail fast naming the field.

Nothing is created here, so a failure needs no cleanup.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from handlers.common import client, error_code, json_setting, setting, split_s3_uri, state_handler
from handlers.errors import InvalidInput
from handlers.naming import run_id

BACKENDS = ("sagemaker", "ec2")
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SECTIONS = ("training", "endpoint", "autoscaling", "predict")
WEIGHTS = ("imagenet", "none")


def _merge(defaults: dict, given: dict) -> dict:
    merged = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = _merge(defaults[key], value)
        else:
            merged[key] = value
    return merged


def _number(value: Any, field: str, minimum: float | None = None, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{field} must be a number, got {value!r}")
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise InvalidInput(f"{field} must be {'an integer' if integer else 'a number'}, "
                           f"got {value!r}") from None
    if minimum is not None and number < minimum:
        raise InvalidInput(f"{field} must be >= {minimum}, got {value!r}")
    return number


def _dataset_uri(doc: dict) -> str:
    dataset = doc.get("dataset")
    uri = dataset.get("s3_uri") if isinstance(dataset, dict) else dataset
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidInput("dataset must be an s3:// prefix holding train/, valid/ and test/")
    return uri if uri.endswith("/") else uri + "/"


def _check_dataset_has_data(uri: str) -> None:
    bucket, prefix = split_s3_uri(uri)
    for split in ("train", "valid", "test"):
        try:
            listing = client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{split}/", MaxKeys=1)
        except ClientError as error:
            if error_code(error) != "NoSuchBucket":
                raise
            raise InvalidInput(f"dataset {uri}: bucket {bucket} does not exist") from None
        if not listing.get("KeyCount"):
            raise InvalidInput(f"dataset {uri} has no objects under {split}/")


def _check_sections(given: dict, defaults: dict) -> None:
    """Sections are objects of known fields (hyperparameters: any names, but an object)."""
    for section in (*SECTIONS, "tuning"):
        values = given.get(section, {})
        if not isinstance(values, dict):
            raise InvalidInput(f"{section} must be an object, got {values!r}")
        unknown = sorted(f"{section}.{key}" for key in set(values) - set(defaults.get(section, values)))
        if unknown:
            raise InvalidInput(f"unknown input fields: {', '.join(unknown)}")
    if not isinstance(given.get("training", {}).get("hyperparameters", {}), dict):
        raise InvalidInput("training.hyperparameters must be an object of name: value")


def _check_training(training: dict) -> None:
    if training.get("backend") not in BACKENDS:
        raise InvalidInput(f"training.backend must be one of {BACKENDS}, got {training.get('backend')!r}")
    _number(training["instance_count"], "training.instance_count", 1, integer=True)
    _number(training["max_wait_seconds"], "training.max_wait_seconds", 1, integer=True)
    for name, value in training.get("hyperparameters", {}).items():
        if name in ("arch",) or isinstance(value, bool):
            continue
        _number(value, f"training.hyperparameters.{name}", 0)


def _check_weights(doc: dict, defaults: dict) -> None:
    """imagenet, none, or a weights file the training roles can read: in the stack's bucket,
    under its dataset or model prefix."""
    weights = doc["training"]["weights"]
    if weights in WEIGHTS:
        return
    if not isinstance(weights, str) or not weights.startswith("s3://") or weights.endswith("/"):
        raise InvalidInput(f"training.weights must be one of {WEIGHTS} or an s3:// URI of a "
                           f"weights file, got {weights!r}")
    bucket, key = split_s3_uri(weights)
    readable = (setting("DATASET_PREFIX", "datasets/"), defaults["model_prefix"])
    if bucket != defaults["bucket"] or not key.startswith(readable):
        raise InvalidInput(f"training.weights must be under s3://{defaults['bucket']}/ "
                           f"{' or '.join(readable)}: the training roles read only there")
    try:
        client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        raise InvalidInput(f"training.weights {weights} does not exist") from None


def _check_hosting(doc: dict) -> None:
    name = doc["endpoint"]["name"]
    if not isinstance(name, str) or not ENDPOINT_NAME.fullmatch(name):
        raise InvalidInput(f"endpoint.name {name!r} must match {ENDPOINT_NAME.pattern}")
    _number(doc["endpoint"]["instance_count"], "endpoint.instance_count", 1, integer=True)
    _number(doc["endpoint"]["max_wait_seconds"], "endpoint.max_wait_seconds", 1, integer=True)
    low = _number(doc["autoscaling"]["min"], "autoscaling.min", 1, integer=True)
    high = _number(doc["autoscaling"]["max"], "autoscaling.max", 1, integer=True)
    if low > high:
        raise InvalidInput(f"autoscaling.min ({low}) must not exceed autoscaling.max ({high})")
    _number(doc["autoscaling"]["target"], "autoscaling.target", 1)
    reserved = _number(doc["predict"]["reserved_concurrency"], "predict.reserved_concurrency", 1, True)
    provisioned = _number(doc["predict"]["provisioned_concurrency"],
                          "predict.provisioned_concurrency", 0, integer=True)
    if provisioned > reserved:
        raise InvalidInput("predict.provisioned_concurrency must not exceed reserved_concurrency")


def _check_stack_scope(doc: dict, defaults: dict) -> None:
    """The stack's roles reach one bucket, its dataset/model prefixes and one endpoint (the
    predict role may invoke exactly that one), so an execution may not point elsewhere."""
    pinned = {"bucket": defaults["bucket"], "model_prefix": defaults["model_prefix"],
              "endpoint.name": defaults["endpoint"]["name"]}
    given = {"bucket": doc["bucket"], "model_prefix": doc["model_prefix"],
             "endpoint.name": doc["endpoint"]["name"]}
    for field, value in given.items():
        if value != pinned[field]:
            raise InvalidInput(f"{field} must be {pinned[field]!r}: this stack's roles reach only it")
    bucket, prefix = split_s3_uri(doc["dataset"]["s3_uri"])
    datasets = setting("DATASET_PREFIX", "datasets/")
    if bucket != pinned["bucket"] or not prefix.startswith(datasets):
        raise InvalidInput(f"dataset must be under s3://{pinned['bucket']}/{datasets}")


@state_handler
def handler(event: dict) -> dict:
    given = event.get("input")
    if not isinstance(given, dict):
        raise InvalidInput("execution input must be a JSON object")
    unknown = set(given) - {"dataset", "tuning", "poll_seconds", "bucket", "model_prefix", *SECTIONS}
    if unknown:
        raise InvalidInput(f"unknown input fields: {', '.join(sorted(unknown))}")
    defaults = json_setting("EXECUTION_DEFAULTS")
    _check_sections(given, defaults)
    doc = _merge(defaults, given)
    doc["dataset"] = {"s3_uri": _dataset_uri(given)}
    _check_training(doc["training"])
    _check_weights(doc, defaults)
    _check_hosting(doc)
    _check_stack_scope(doc, defaults)
    _number(doc["poll_seconds"], "poll_seconds", 0, integer=True)
    doc["poll_seconds"] = int(doc["poll_seconds"])
    if "tuning" in doc:
        _number(doc["tuning"].get("max_jobs"), "tuning.max_jobs", 1, integer=True)
        if "max_wait_seconds" in doc["tuning"]:
            _number(doc["tuning"]["max_wait_seconds"], "tuning.max_wait_seconds", 1, integer=True)
    _check_dataset_has_data(doc["dataset"]["s3_uri"])
    doc["run_id"] = run_id(event["execution_name"])
    doc["execution_name"] = event["execution_name"]
    return doc
