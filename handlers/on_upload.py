"""OnUpload: an S3 "Object Created" event (via EventBridge) starts one pipeline execution.

Only a dataset's completion marker counts — ``datasets/<name>/_READY``, or a
``datasets/<name>/manifest.json`` listing the dataset's files — so uploading thousands of images
starts one execution, not thousands. The execution name is derived from the bucket, key and
object version (or ETag), so the same event delivered twice maps to the same name
and Step Functions refuses the second start (``ExecutionAlreadyExists`` counts as success).

Problems with the upload itself (malformed manifest, missing splits) are answered with a
4xx-style result and a log line, never an exception: EventBridge would only retry the same bad
upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from handlers.common import client, error_code, logger
from handlers.errors import InvalidInput
from handlers.input_schema import check_input

MARKERS = ("_READY", "manifest.json")
SPLITS = ("train", "valid", "test")
NAME_LIMIT = 80
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class UploadRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def object_created(event: dict) -> dict[str, str]:
    """Bucket, key and identity of the object from an EventBridge (or direct S3) event."""
    if "detail" in event:
        detail = event["detail"]
        obj = detail.get("object", {})
        return {"bucket": detail.get("bucket", {}).get("name", ""), "key": obj.get("key", ""),
                "etag": obj.get("etag") or obj.get("eTag", ""), "version": obj.get("version-id") or ""}
    record = (event.get("Records") or [{}])[0].get("s3", {})
    obj = record.get("object", {})
    return {"bucket": record.get("bucket", {}).get("name", ""),
            "key": unquote_plus(obj.get("key", "")),  # S3's own notifications URL-encode keys
            "etag": obj.get("eTag", ""), "version": obj.get("versionId") or ""}


def dataset_of(key: str, prefix: str) -> tuple[str, str] | None:
    """(dataset name, marker) when ``key`` is ``<prefix><name>/<marker>``; None otherwise."""
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix):].split("/")
    if len(parts) != 2 or not parts[0] or parts[1] not in MARKERS:
        return None
    return parts[0], parts[1]


def execution_name(obj: dict[str, str], dataset: str) -> str:
    """Deterministic per object version: ≤ 80 chars of [A-Za-z0-9_-], readable prefix + hash."""
    version = obj["version"] if obj["version"] not in ("", "null") else ""
    identity = "/".join([obj["bucket"], obj["key"], version or obj["etag"].strip('"')])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    readable = _NAME_UNSAFE.sub("-", dataset).strip("-")[: NAME_LIMIT - len(digest) - 8] or "dataset"
    return f"upload-{readable}-{digest}"


def read_manifest(bucket: str, key: str) -> list[str]:
    try:
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        manifest = json.loads(body)
    except ValueError as error:
        raise UploadRejected(400, "InvalidManifest", f"{key} is not JSON: {error}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else manifest
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise UploadRejected(400, "InvalidManifest",
                             f'{key} must be {{"files": [relative keys...]}} with at least one file')
    return files


def listed_keys(bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(item["Key"][len(prefix):] for item in page.get("Contents", []))
    return keys


def check_dataset(bucket: str, prefix: str, manifest: list[str] | None) -> None:
    present = listed_keys(bucket, prefix)
    empty = [split for split in SPLITS if not any(k.startswith(f"{split}/") for k in present)]
    if empty:
        raise UploadRejected(400, "EmptyDataset",
                             f"s3://{bucket}/{prefix} has no objects under {', '.join(empty)}/")
    missing = sorted(set(manifest or []) - present)
    if missing:
        raise UploadRejected(400, "IncompleteUpload", f"{len(missing)} file(s) in the manifest are "
                             f"not uploaded yet, e.g. {missing[0]}")


def start(name: str, document: dict) -> dict[str, Any]:
    sfn = client("stepfunctions")
    arn = os.environ["STATE_MACHINE_ARN"]
    try:
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(document))
    except ClientError as error:
        if error_code(error) != "ExecutionAlreadyExists":
            raise
        logger.info("duplicate event: execution exists", execution_name=name)
        return {"started": False, "duplicate": True,
                "executionArn": arn.replace(":stateMachine:", ":execution:") + f":{name}"}
    logger.info("started execution", execution_arn=started["executionArn"])
    return {"started": True, "duplicate": False, "executionArn": started["executionArn"]}


def _rejected(error: UploadRejected, obj: dict) -> dict[str, Any]:
    logger.error("upload rejected", error=error.code, reason=error.message, key=obj["key"])
    return {"started": False, "statusCode": error.status, "error": error.code, "message": error.message}


@logger.inject_lambda_context(log_event=False)
def handler(event: dict, context: Any) -> dict[str, Any]:
    obj = object_created(event if isinstance(event, dict) else {})
    prefix = os.environ.get("DATASET_PREFIX", "datasets/")
    found = dataset_of(obj["key"], prefix)
    if not obj["bucket"] or found is None:
        logger.info("ignored: not a dataset completion marker", key=obj["key"])
        return {"started": False, "ignored": True, "key": obj["key"]}
    dataset, marker = found
    dataset_prefix = f"{prefix}{dataset}/"
    try:
        manifest = read_manifest(obj["bucket"], obj["key"]) if marker == "manifest.json" else None
        check_dataset(obj["bucket"], dataset_prefix, manifest)
    except UploadRejected as error:
        return _rejected(error, obj)
    document = {**json.loads(os.environ.get("EXECUTION_INPUT") or "{}"),
                "dataset": f"s3://{obj['bucket']}/{dataset_prefix}"}
    try:
        check_input(document)  # refused here, before StartExecution, rather than by ValidateInput
    except InvalidInput as error:
        return _rejected(UploadRejected(400, "InvalidExecutionInput", str(error)), obj)
    return {**start(execution_name(obj, dataset), document), "dataset": document["dataset"]}
