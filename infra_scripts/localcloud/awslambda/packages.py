"""A function's code and layers as its execution environments see them: the zip extracted into a
task root, the layers extracted in order into one /opt-like directory, both read-only (the
bootstrap mounts them so), each extracted once per content digest."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def unzipped_size(archive: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return sum(info.file_size for info in opened.infolist())


def layer_archives(fn: Any, backend: Any) -> list[bytes]:
    """The zips of the function's layers, in the order Lambda extracts them."""
    archives = []
    for layer in fn.layers or []:
        version = backend.layers_versions_by_arn(layer["Arn"])
        archives.append(version.code_bytes if version is not None else b"")
    return archives


def _extract(target: Path, archives: list[bytes]) -> Path:
    if target.exists():
        return target
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    for archive in archives:  # a later layer overwrites an earlier one's files, as in /opt
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            opened.extractall(staging)
    staging.mkdir(parents=True, exist_ok=True)
    for folder, _, files in os.walk(staging):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o555 if _executable(folder, name) else 0o444)
    with _lock:
        if target.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(target)
    return target


def _executable(folder: str, name: str) -> bool:
    return os.stat(os.path.join(folder, name)).st_mode & 0o111 != 0


def task_root(root: Path, fn: Any) -> Path:
    """The extracted deployment package (Lambda's /var/task)."""
    return _extract(root / "code" / fn.function_name / fn.code_sha_256.replace("/", "_"), [fn.code_bytes])


def opt_dir(root: Path, fn: Any, backend: Any) -> Path | None:
    """The function's layers merged (Lambda's /opt), or None without layers."""
    archives = layer_archives(fn, backend)
    if not archives:
        return None
    digest = hashlib.sha256(b"".join(hashlib.sha256(a).digest() for a in archives)).hexdigest()[:24]
    return _extract(root / "opt" / digest, archives)
