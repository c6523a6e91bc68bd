"""SmokeTest: one held-out test image through the predict Lambda's live alias."""

from __future__ import annotations

import base64
import json

from handlers.common import client, split_s3_uri, state_handler, with_section
from handlers.errors import SmokeTestFailed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def held_out_image(dataset_uri: str) -> tuple[str, bytes, str]:
    """The first test image (deterministic), its bytes, and its class (the folder name)."""
    bucket, prefix = split_s3_uri(dataset_uri)
    listing = client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}test/")
    keys = sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].lower().endswith(IMAGE_SUFFIXES))
    if not keys:
        raise SmokeTestFailed(f"no test images under {dataset_uri}test/")
    key = keys[0]
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return f"s3://{bucket}/{key}", body, key.split("/")[-2]


@state_handler
def handler(doc: dict) -> dict:
    uri, image, expected = held_out_image(doc["dataset"]["s3_uri"])
    response = client("lambda").invoke(
        FunctionName=doc["predict"]["alias_arn"],
        Payload=json.dumps({"image": base64.b64encode(image).decode()}),
    )
    payload = json.loads(response["Payload"].read())
    if response.get("FunctionError") or payload.get("statusCode") != 200:
        raise SmokeTestFailed(f"predict returned {payload}")
    top = json.loads(payload["body"])["predictions"][0]
    return with_section(doc, "smoke_test", {
        "image": uri, "expected": expected, "label": top["label"],
        "probability": top["probability"], "correct": top["label"] == expected,
    })
