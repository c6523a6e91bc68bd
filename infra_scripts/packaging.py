"""Build what gets uploaded: the handlers' Lambda zip, the layer holding their dependencies,
and the source bundles SageMaker and EC2 instances run. Archives are deterministic (sorted
entries, fixed timestamps and modes) so an unchanged tree gives the same bytes and CodeSha256,
and redeploys are no-ops.

The layer is what ``sam build`` makes of ``handlers/requirements.txt`` for python3.11 on x86_64:
pip installs it for the Lambda platform into ``python/`` (the layer path on ``sys.path``). It
needs a package index once; the zip is then cached on disk under a hash of the requirements and
the recipe (``$STEPML_CACHE_DIR``, default ``~/.cache/stepml``), so later builds and the tests
are offline. ``python -m infra_scripts.packaging`` prebuilds it and reports the sizes against
Lambda's limits.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from infra_scripts.localcloud.core.toolchains import cache_root

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
UNIX = 3  # ZipInfo.create_system; set explicitly, as its default depends on the building OS

HANDLERS_REQUIREMENTS = PROJECT_ROOT / "handlers" / "requirements.txt"
LAYER_ROOT = "python"  # Lambda puts /opt/python on sys.path
# The Lambda platform, as `sam build` targets python3.11 on x86_64.
LAYER_PLATFORM = ("--platform", "manylinux2014_x86_64", "--implementation", "cp",
                  "--python-version", "3.11", "--only-binary=:all:")
LAYER_FORMAT = "2"  # part of the cache key: bump it when what goes into the zip changes
# /opt is read-only on Lambda, so Python can never cache bytecode there: a layer without .pyc
# compiles every module it imports at each cold start (Powertools: ~110 ms of a ~170 ms cold
# start here). Hash-based, unchecked .pyc (PEP 552) carry no timestamps, so they are as
# deterministic as the sources; their file names are those Lambda shows (/opt/python/...).
LAYER_MOUNT = "/opt"
RUNTIME_PYTHON = (3, 11)

# Lambda's documented quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html):
# a .zip uploaded directly is at most 50 MB; function code plus all its layers, unzipped, 250 MB.
# Lambda counts MB as MiB: "Unzipped size must be smaller than 262144000 bytes".
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024

# Script-mode entry points: the bundles keep the packages importable under their own names.
TRAINING_ENTRY = "train_entry.py"
INFERENCE_ENTRY = "serve_entry.py"
_TRAINING_SHIM = ("from training.train import main\n\n"
                  "if __name__ == '__main__':\n    raise SystemExit(main())\n")
_INFERENCE_SHIM = ("# SageMaker's PyTorch serving container loads these four functions from here.\n"
                   "from inference.inference import (  # noqa: F401\n"
                   "    input_fn, model_fn, output_fn, predict_fn)\n")


def _python_files(package: str, data: tuple[str, ...] = ()) -> Iterator[tuple[str, Path]]:
    """The package's modules and the data files it reads (``data``: glob patterns)."""
    base = PROJECT_ROOT / package
    for path in sorted(p for pattern in ("*.py", *data) for p in base.rglob(pattern)):
        if not SKIP_PARTS.intersection(path.parts):
            yield str(path.relative_to(PROJECT_ROOT)), path


def deterministic_zip(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, data, mode) entries, byte-identical for identical input in any order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system, info.external_attr = UNIX, (0o100000 | mode) << 16
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def handlers_zip() -> bytes:
    """The deployment package of every handler Lambda: the ``handlers`` package only (its
    dependencies are in ``handler_dependencies_layer()``)."""
    return deterministic_zip((name, path.read_bytes(), 0o644)
                             for name, path in _python_files("handlers", ("*.schema.json",)))


# -- the handlers' dependencies layer ---------------------------------------------------------------
class LayerBuildError(RuntimeError):
    pass


def layer_cache_key(requirements: bytes) -> str:
    """What decides the layer's bytes: the requirements, the target platform, the zip format."""
    recipe = "\0".join([LAYER_FORMAT, *LAYER_PLATFORM]).encode()
    return hashlib.sha256(recipe + b"\0" + requirements).hexdigest()


def layer_cache_path(requirements: Path = HANDLERS_REQUIREMENTS) -> Path:
    return cache_root() / "layers" / f"{layer_cache_key(requirements.read_bytes())}.zip"


def pip_install_for_lambda(requirements: Path, target: Path) -> None:
    """``sam build``'s install, for the Lambda platform (bytecode comes after, see compile_for_lambda)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
               "--disable-pip-version-check", *LAYER_PLATFORM, "--target", str(target),
               "-r", str(requirements)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LayerBuildError(f"pip could not install {requirements} for the Lambda platform "
                              f"(it needs a package index once; later builds use the cache "
                              f"in {cache_root()}):\n{result.stderr.strip()}")


def compile_for_lambda(layer_root: Path) -> None:
    """python3.11 bytecode for every module, as Lambda will import it from /opt/python."""
    if sys.version_info[:2] != RUNTIME_PYTHON:
        return  # another interpreter's bytecode would be ignored by the runtime
    # A fresh interpreter with a fixed hash seed (-I would ignore it; -s keeps user site out):
    # marshal's output depends on interpreter state (string hashes order frozenset constants,
    # refcounts decide back-references).
    command = [sys.executable, "-s", "-m", "compileall", "-q", "-j", "1",
               "-d", f"{LAYER_MOUNT}/{LAYER_ROOT}", "--invalidation-mode", "unchecked-hash", str(layer_root)]
    result = subprocess.run(command, capture_output=True, text=True, env={"PYTHONHASHSEED": "0"})
    if result.returncode != 0:
        raise LayerBuildError(f"could not compile the layer: {result.stdout.strip()} {result.stderr.strip()}")


def shipped_in_layer(relative: PurePosixPath) -> bool:
    """Console scripts and pip's RECORD stay out: scripts carry the builder's interpreter in
    their shebang and are useless in a read-only /opt; RECORD only serves uninstalling and
    hashes those scripts. The rest of each .dist-info stays, so importlib.metadata still finds
    every distribution and its version. Bytecode ships only as python3.11's hash-based .pyc."""
    parts = relative.parts
    if relative.suffix == ".pyc" and not relative.name.endswith(".cpython-311.pyc"):
        return False
    if parts[:2] == (LAYER_ROOT, "bin"):
        return False
    return not (relative.name == "RECORD" and relative.parent.name.endswith(".dist-info"))


def zip_tree(root: Path) -> bytes:
    """The files under ``root`` that a layer ships, keeping only the executable bit."""
    entries = []
    for path in root.rglob("*"):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not path.is_symlink() and shipped_in_layer(relative):
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            entries.append((str(relative), path.read_bytes(), mode))
    return deterministic_zip(entries)


def build_layer(requirements: Path = HANDLERS_REQUIREMENTS) -> bytes:
    """Install ``requirements`` into ``python/`` of a fresh directory and zip it (no cache)."""
    with tempfile.TemporaryDirectory(prefix="stepml-layer-") as scratch:
        pip_install_for_lambda(requirements, Path(scratch) / LAYER_ROOT)
        compile_for_lambda(Path(scratch) / LAYER_ROOT)
        return zip_tree(Path(scratch))


def handler_dependencies_layer(requirements: Path = HANDLERS_REQUIREMENTS) -> bytes:
    """The layer zip of the handlers' dependencies, built once per requirements file."""
    cached = layer_cache_path(requirements)
    if cached.is_file():
        return cached.read_bytes()
    body = build_layer(requirements)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    partial.write_bytes(body)
    partial.replace(cached)  # atomic: a reader never sees half a zip
    return body


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of in-memory files, byte-identical for identical input (no timestamps)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# The PyTorch inference container imports the user's code from model.tar.gz's code/ only
# (sagemaker-inference's environment.code_dir) and pip-installs code/requirements.txt there. The
# training bundle carries that folder as serving/, and the training script copies it into
# SM_MODEL_DIR/code, so the job's model.tar.gz deploys as it is (training.train's
# _copy_serving_code): no repack job, no second copy of the weights.
SERVING_DIR = "serving"
SERVING_REQUIREMENTS = ("# What serve_entry.py needs beyond the PyTorch inference container, which\n"
                        "# already has torch, torchvision, Pillow and boto3: nothing.\n")


def serving_files() -> dict[str, bytes]:
    """model.tar.gz's code/: the inference package, the entry point and its requirements."""
    files = {name: path.read_bytes() for name, path in _python_files("inference")}
    files[INFERENCE_ENTRY] = _INFERENCE_SHIM.encode()
    files["requirements.txt"] = SERVING_REQUIREMENTS.encode()
    return files


def serving_environment(region: str, program: str = INFERENCE_ENTRY) -> dict[str, str]:
    """CreateModel's Environment for the PyTorch inference container (as handlers/create_model.py
    sets it on the stack), for tests and benchmarks that create models themselves."""
    return {"SAGEMAKER_PROGRAM": program, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_REGION": region, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}


def training_source() -> bytes:
    files = {name: path.read_bytes() for name, path in _python_files("training")}
    files[TRAINING_ENTRY] = _TRAINING_SHIM.encode()
    files.update({f"{SERVING_DIR}/{name}": body for name, body in serving_files().items()})
    return tar_gz(files)


def inference_source() -> bytes:
    return tar_gz(serving_files())


def write_training_source_dir(target: Path) -> Path:
    """The training bundle as a directory: what the SageMaker SDK estimator stages to S3."""
    with tarfile.open(fileobj=io.BytesIO(training_source()), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    return target


# -- sizes against Lambda's quotas ------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveSize:
    name: str
    zipped: int
    unzipped: int


def archive_size(name: str, body: bytes) -> ArchiveSize:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return ArchiveSize(name, len(body), sum(info.file_size for info in archive.infolist()))


@dataclass(frozen=True)
class SizeReport:
    archives: tuple[ArchiveSize, ...]

    @property
    def unzipped_total(self) -> int:
        return sum(archive.unzipped for archive in self.archives)

    def problems(self) -> list[str]:
        found = [f"{a.name}: {a.zipped} bytes zipped exceeds {ZIPPED_LIMIT}"
                 for a in self.archives if a.zipped > ZIPPED_LIMIT]
        if self.unzipped_total > UNZIPPED_LIMIT:
            found.append(f"code and layers: {self.unzipped_total} bytes unzipped exceed "
                         f"{UNZIPPED_LIMIT}")
        return found

    def lines(self) -> list[str]:
        rows = [f"{a.name:20} {a.zipped:>12,} zipped {a.unzipped:>12,} unzipped"
                for a in self.archives]
        rows.append(f"{'unzipped total':20} {self.unzipped_total:>12,} of {UNZIPPED_LIMIT:,} "
                    f"({100 * self.unzipped_total / UNZIPPED_LIMIT:.1f}%); each zip at most "
                    f"{ZIPPED_LIMIT:,}")
        return rows


def lambda_size_report() -> SizeReport:
    """Every handler function's code zip and its layer, as Lambda counts them."""
    return SizeReport((archive_size("handlers code", handlers_zip()),
                       archive_size("dependencies layer", handler_dependencies_layer())))


def main() -> int:
    """Prebuild the cached layer (``make lambda-artifacts``) and report the sizes."""
    report = lambda_size_report()
    print(f"layer cached at {layer_cache_path()}")
    print("\n".join(report.lines()))
    for problem in report.problems():
        print(f"over Lambda's limit: {problem}", file=sys.stderr)
    return 1 if report.problems() else 0


if __name__ == "__main__":
    raise SystemExit(main())
