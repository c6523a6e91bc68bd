"""ValidateInput: check the input against its JSON Schema, apply deploy-time defaults, then
make the checks a schema cannot (bounds between fields, the stack's scope, data that exists).

Nothing is created here, so a failure needs no cleanup.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from handlers.common import client, error_code, json_setting, setting, split_s3_uri, state_handler
from handlers.errors import InvalidInput
from handlers.input_schema import check_input
from handlers.naming import run_id

WEIGHTS = ("imagenet", "none")


def _merge(defaults: dict, given: dict) -> dict:
    merged = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = _merge(defaults[key], value)
        else:
            merged[key] = value
    return merged


def _dataset_uri(doc: dict) -> str:
    dataset = doc["dataset"]
    uri = dataset["s3_uri"] if isinstance(dataset, dict) else dataset
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


def _check_weights(doc: dict, defaults: dict) -> None:
    """imagenet, none, or a weights file the training roles can read: in the stack's bucket,
    under its dataset or model prefix."""
    weights = doc["training"]["weights"]
    if weights in WEIGHTS:
        return
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


def _check_bounds(doc: dict) -> None:
    """What the schema cannot say: one field bounded by another."""
    low, high = doc["autoscaling"]["min"], doc["autoscaling"]["max"]
    if low > high:
        raise InvalidInput(f"autoscaling.min ({low}) must not exceed autoscaling.max ({high})")
    reserved = doc["predict"]["reserved_concurrency"]
    if reserved and doc["predict"]["provisioned_concurrency"] > reserved:
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
    check_input(given)  # the execution input's JSON Schema: types, ranges, known fields
    defaults = json_setting("EXECUTION_DEFAULTS")
    doc = _merge(defaults, given)
    doc["dataset"] = {"s3_uri": _dataset_uri(given)}
    _check_bounds(doc)
    _check_stack_scope(doc, defaults)
    _check_weights(doc, defaults)
    _check_dataset_has_data(doc["dataset"]["s3_uri"])
    doc["poll_seconds"] = int(doc["poll_seconds"])
    doc["run_id"] = run_id(event["execution_name"])
    doc["execution_name"] = event["execution_name"]
    doc["execution_arn"] = event.get("execution_arn", "")
    return doc
