"""Fixtures for training tests: a tiny generated dataset and a helper to run the entry point."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.dataset import make_dataset

REPO = Path(__file__).resolve().parents[2]
# Small and fast: 3 classes, 32 px, 8/4/4 images per class in train/valid/test. One thread:
# tiny tensors gain nothing from more, and a busy CI machine makes OpenMP barriers stall.
TINY = {"classes": 3, "size": 32, "seed": 0, "splits": (8, 4, 4)}
FAST_ARGS = ["--image-size", "32", "--epochs", "30", "--batch-size", "8", "--workers", "0",
             "--lr", "0.01", "--threads", "1"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny") / "data", **TINY)


@pytest.fixture
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's env minus anything that would change the run (SageMaker, torchrun)."""
    drop = ("SM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_",
            "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_entry(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.train", *args], env=env or clean_env(),
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout)


def metric_lines(stdout: str, first_key: str) -> list[dict[str, str]]:
    """Parse the `key=value` lines that start with `first_key=`."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith(f"{first_key}="):
            rows.append(dict(pair.split("=", 1) for pair in line.split()))
    return rows


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read os.environ: keep SageMaker/torchrun variables of the host out."""
    for key in list(os.environ):
        if key.startswith(("SM_", "MASTER_")) or key in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                          "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(key)
