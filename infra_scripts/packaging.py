"""Build what gets uploaded: the handlers' Lambda zip and the source bundles SageMaker and EC2
instances run. Archives are deterministic (sorted entries, fixed timestamps) so an unchanged
tree gives the same bytes and CodeSha256, and redeploys are no-ops."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
SKIP_PARTS = {"__pycache__", ".pytest_cache"}

# Script-mode entry points: the bundles keep the packages importable under their own names.
TRAINING_ENTRY = "train_entry.py"
INFERENCE_ENTRY = "serve_entry.py"
_TRAINING_SHIM = ("from training.train import main\n\n"
                  "if __name__ == '__main__':\n    raise SystemExit(main())\n")
_INFERENCE_SHIM = ("# SageMaker's PyTorch serving container loads these four functions from here.\n"
                   "from inference.inference import (  # noqa: F401\n"
                   "    input_fn, model_fn, output_fn, predict_fn)\n")


def _python_files(package: str) -> Iterator[tuple[str, Path]]:
    base = PROJECT_ROOT / package
    for path in sorted(base.rglob("*.py")):
        if not SKIP_PARTS.intersection(path.parts):
            yield str(path.relative_to(PROJECT_ROOT)), path


def handlers_zip() -> bytes:
    """The deployment package of every handler Lambda: the ``handlers`` package only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in _python_files("handlers"):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


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


def source_tarball(package: str, entry_name: str | None = None, entry_text: str = "") -> bytes:
    """A ``sourcedir.tar.gz``: the package plus an optional top-level entry script."""
    files = {name: path.read_bytes() for name, path in _python_files(package)}
    if entry_name:
        files[entry_name] = entry_text.encode()
    return tar_gz(files)


def training_source() -> bytes:
    return source_tarball("training", TRAINING_ENTRY, _TRAINING_SHIM)


def inference_source() -> bytes:
    return source_tarball("inference", INFERENCE_ENTRY, _INFERENCE_SHIM)


def write_training_source_dir(target: Path) -> Path:
    """The training bundle as a directory: what the SageMaker SDK estimator stages to S3."""
    with tarfile.open(fileobj=io.BytesIO(training_source()), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    return target
