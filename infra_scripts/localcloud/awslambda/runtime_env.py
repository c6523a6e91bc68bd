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

import json
from dataclasses import dataclass
from pathlib import Path

from infra_scripts.localcloud.core.toolchains import (
    ToolchainUnavailable,
    build_once,
    cache_root,
    find_interpreter,
    is_built,
    pins_key,
    run_pip,
)

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


RuntimeUnavailable = ToolchainUnavailable  # the runtime environment could not be found or built


@dataclass(frozen=True)
class RuntimeEnvironment:
    interpreter: str  # a CPython 3.11, run with -I -S
    packages_dir: Path  # boto3, botocore, awslambdaric and their dependencies

    def command(self, *args: str) -> list[str]:
        return [self.interpreter, "-I", "-S", "-B", str(BOOTSTRAP), *args]


def runtime_environment(build: bool = True) -> RuntimeEnvironment:
    """The cached environment, built first if ``build`` (one builder at a time, atomically)."""
    key = pins_key({"runtime": RUNTIME, "packages": RUNTIME_PACKAGES})
    target = cache_root() / "lambda-runtime" / f"{RUNTIME}-{key}"
    interpreter = find_interpreter()
    if not is_built(target):
        if not build:
            raise RuntimeUnavailable(f"Lambda runtime not built at {target}; run `make lambda-runtime`")
        build_once(target, _pip_install, json.dumps(RUNTIME_PACKAGES))
    return RuntimeEnvironment(interpreter, target / "packages")


def _pip_install(staging: Path) -> None:
    # Binary wheels only, as AWS builds its runtime images; no byte-code written now, the way a
    # fresh execution environment starts.
    run_pip(["install", "--quiet", "--no-compile", "--only-binary=:all:",
             "--target", str(staging / "packages"), *RUNTIME_PACKAGES], "the Lambda runtime")


def main() -> None:
    """``python -m infra_scripts.localcloud.awslambda.runtime_env``: build the cache (make does)."""
    environment = runtime_environment()
    print(f"Lambda {RUNTIME} runtime: {environment.packages_dir}")


if __name__ == "__main__":
    main()
