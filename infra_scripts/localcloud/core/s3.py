"""S3 helpers of the local compute: URIs and prefix downloads through the local cloud's S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); ValueError for anything else."""
    if not uri.startswith("s3://") or not uri[5:].partition("/")[0]:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def object_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Keys of the objects under ``prefix`` (folder placeholders excluded)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item["Key"]


def relative_key(key: str, prefix: str) -> str | None:
    """Where ``key`` lands below a download target, or None when it would escape it."""
    relative = key[len(prefix):].lstrip("/")
    if not relative or ".." in Path(relative).parts:
        return None
    return relative
