"""The python3.11 runtime environment Lambda workers run in: what AWS's managed runtime holds,
nothing more.

AWS's python3.11 runtime is a Python 3.11 interpreter with the SDK for Python (boto3, botocore
and their dependencies) and the runtime interface client (``awslambdaric``); the function's zip
and layers supply everything else. Here that is a Python 3.11 interpreter started isolated and
without ``site`` (``-I -S``: no site-packages, no ``PYTHON*`` variables, no script directory on
``sys.path``) plus one directory holding exactly those packages at the versions AWS documents,
installed once from PyPI and cached, keyed by the pins below.
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
from dataclasses import dataclass
from pathlib import Path

RUNTIME = "python3.11"
# "Runtime-included SDK versions", https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html:
# AWS no longer publishes one version per runtime ("depends on the runtime version and your AWS
# Region"), so this pins one a python3.11 runtime has shipped: a function must not depend on a
# newer SDK than the runtime's, and what runs here is never the project venv's SDK.
BOTO3_VERSION = "1.40.6"
BOTOCORE_VERSION = "1.40.6"
# AWS's runtime interface client, the piece that drives the handler inside the runtime.
AWSLAMBDARIC_VERSION = "4.2.2"
RUNTIME_PACKAGES = (
    f"boto3=={BOTO3_VERSION}",
    f"botocore=={BOTOCORE_VERSION}",
    f"awslambdaric=={AWSLAMBDARIC_VERSION}",
)
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")


class RuntimeUnavailable(RuntimeError):
    """The runtime environment could not be found or built."""


@dataclass(frozen=True)
class RuntimeEnvironment:
    interpreter: str  # a CPython 3.11, run with -I -S
    packages_dir: Path  # boto3, botocore, awslambdaric and their dependencies

    def command(self, *args: str) -> list[str]:
        return [self.interpreter, "-I", "-S", "-B", str(BOOTSTRAP), *args]


def cache_root() -> Path:
    return Path(os.environ.get("STEPML_CACHE_DIR") or Path.home() / ".cache" / "stepml")


def _key() -> str:
    pins = json.dumps({"runtime": RUNTIME, "packages": RUNTIME_PACKAGES}, sort_keys=True)
    return hashlib.sha256(pins.encode()).hexdigest()[:16]


def find_interpreter() -> str:
    """A CPython 3.11 without a virtualenv's site-packages: the base of this venv if it is 3.11,
    else ``python3.11`` on PATH."""
    candidates = [getattr(sys, "_base_executable", ""), sys.executable, shutil.which("python3.11") or ""]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 11)":
            return candidate
    raise RuntimeUnavailable("Lambda's python3.11 runtime needs a CPython 3.11 interpreter "
                             "(python3.11 on PATH)")


def runtime_environment(build: bool = True) -> RuntimeEnvironment:
    """The cached environment, built first if ``build`` (one builder at a time, atomically)."""
    target = cache_root() / "lambda-runtime" / f"{RUNTIME}-{_key()}"
    interpreter = find_interpreter()
    if not (target / ".complete").exists():
        if not build:
            raise RuntimeUnavailable(f"Lambda runtime not built at {target}; run `make lambda-runtime`")
        _build(target)
    return RuntimeEnvironment(interpreter, target / "packages")


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            _pip_install(staging / "packages")
            (staging / ".complete").write_text(json.dumps(RUNTIME_PACKAGES))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _pip_install(packages_dir: Path) -> None:
    # Binary wheels only, as AWS builds its runtime images; no byte-code written now, the way a
    # fresh execution environment starts.
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--only-binary=:all:", "--target", str(packages_dir), *RUNTIME_PACKAGES]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeUnavailable(f"could not build the Lambda runtime: {result.stderr.strip()[-2000:]}")


def main() -> None:
    """``python -m infra_scripts.localcloud.awslambda.runtime_env``: build the cache (make does)."""
    environment = runtime_environment()
    print(f"Lambda {RUNTIME} runtime: {environment.packages_dir}")


if __name__ == "__main__":
    main()
