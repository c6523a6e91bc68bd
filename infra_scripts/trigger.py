"""The client side of the S3 upload trigger: ``upload_dataset`` uploads a local dataset and
writes its completion marker last. The trigger itself (bucket → EventBridge → rule →
``on_upload`` Lambda → StartExecution) is part of the stack (``infra_scripts/cfn/template.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODULE = "on_upload"
MARKER = "_READY"
MANIFEST = "manifest.json"
TARGET_ID = "on-upload"
def marker_body(keys: list[str]) -> bytes:
    """A marker whose content differs per upload: its ETag is part of the execution name, so a
    re-upload starts a new run while a duplicate event of the same upload does not."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return json.dumps({"files": len(keys), "digest": digest, "uploaded_at": time.time()}).encode()


def upload_dataset(s3: Any, bucket: str, local_dir: Path, name: str, prefix: str = "datasets/",
                   progress: Callable[[int, int], None] | None = None, marker: bool = True) -> str:
    """Upload every file under ``local_dir`` to ``<prefix><name>/``, then one marker last: the
    dataset's own ``manifest.json`` if it has one, else a ``_READY`` object (never both, which
    would start two runs). ``marker=False``: no marker, for a caller that starts the execution
    itself on a stack whose upload trigger is on."""
    key_prefix = f"{prefix}{name}/"
    markers = (MARKER, MANIFEST)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and
                   p.relative_to(local_dir).as_posix() not in markers)
    keys = [path.relative_to(local_dir).as_posix() for path in files]
    for number, (path, key) in enumerate(zip(files, keys, strict=True), start=1):
        s3.upload_file(str(path), bucket, key_prefix + key)
        if progress:
            progress(number, len(files))
    manifest = local_dir / MANIFEST
    if marker and manifest.is_file():
        s3.upload_file(str(manifest), bucket, key_prefix + MANIFEST)
    elif marker:
        s3.put_object(Bucket=bucket, Key=key_prefix + MARKER, Body=marker_body(keys))
    return f"s3://{bucket}/{key_prefix}"
