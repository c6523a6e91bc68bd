"""Pinned environments the local cloud runs AWS's pieces in, built once and cached.

The Lambda runtime (``awslambda.runtime_env``) and the SageMaker framework containers
(``sagemaker.containers``) are each a directory built from pinned packages, keyed by a digest of
the pins, built by one process at a time and published atomically (a half-built directory is
never used), and run by a plain CPython 3.11 rather than the project's virtualenv.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPLETE_MARKER = ".complete"


class ToolchainUnavailable(RuntimeError):
    """An environment could not be found or built."""


def cache_root() -> Path:
    return Path(os.environ.get("STEPML_CACHE_DIR") or Path.home() / ".cache" / "stepml")


def pins_key(pins: Any) -> str:
    """A short digest of what an environment is built from: new pins, new directory."""
    return hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:16]


def find_interpreter() -> str:
    """A CPython 3.11 without a virtualenv's site-packages: the base of this venv if it is 3.11,
    else ``python3.11`` on PATH."""
    candidates = [getattr(sys, "_base_executable", ""), sys.executable, shutil.which("python3.11") or ""]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 11)":
            return candidate
    raise ToolchainUnavailable("the local cloud's AWS runtimes need a CPython 3.11 interpreter "
                               "(python3.11 on PATH)")


def is_built(target: Path) -> bool:
    return (target / COMPLETE_MARKER).exists()


def build_once(target: Path, fill: Callable[[Path], None], description: str) -> None:
    """Build ``target`` with ``fill(staging_dir)`` unless it is already complete.

    One builder at a time (a lock beside the target); the staging directory is renamed into
    place only when ``fill`` returned, so readers never see a partial build.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(target):
            return
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            fill(staging)
            (staging / COMPLETE_MARKER).write_text(description)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def run_pip(arguments: list[str], what: str) -> None:
    """``pip`` of this environment with ``arguments``; ToolchainUnavailable with pip's stderr."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainUnavailable(f"could not build {what}: {result.stderr.strip()[-2000:]}")
