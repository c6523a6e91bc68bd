"""The only AWS code in training/: copy s3:// prefixes to and from local directories.

boto3 resolves credentials, region and AWS_ENDPOINT_URL (the local cloud) by itself.
"""
from __future__ import annotations

from pathlib import Path

from training.config import InputError


def is_s3(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"not an s3 URI: {uri!r}")
    return bucket, key


def _client():
    import boto3  # imported lazily: local-only training never needs it
    return boto3.client("s3")


def download_prefix(uri: str, dest: str | Path) -> int:
    """Download every object under the prefix `uri` into `dest`; return the object count."""
    bucket, prefix = split_s3(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client, count = _client(), 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/"):  # "folder" marker objects
                continue
            target = inside(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count


def inside(dest: str | Path, relative: str) -> Path:
    """``dest/relative``, refusing a key that would land outside ``dest`` (``..`` parts, or a
    leading ``/``, are legal in S3 keys)."""
    root = Path(dest).resolve()
    target = (root / relative.lstrip("/")).resolve()
    if not target.is_relative_to(root) or target == root:
        raise InputError(f"object key part {relative!r} escapes the destination {dest}")
    return target


def download_file(uri: str, dest: str | Path) -> Path:
    bucket, key = split_s3(uri)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    _client().download_file(bucket, key, str(dest))
    return Path(dest)


def upload_dir(src: str | Path, uri: str) -> list[str]:
    """Upload every file under `src` to the prefix `uri`; return the keys written."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/")
    client, keys = _client(), []
    for path in sorted(Path(src).rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(src).as_posix()}".lstrip("/")
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys
