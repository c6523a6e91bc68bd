"""Two-process DDP over gloo on 127.0.0.1, launched the SageMaker way and the torchrun way."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import FAST_ARGS, REPO, clean_env, metric_lines
from training.config import InputError
from training.distributed import DistInfo, detect
from training.train import main as train_main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_env(style: str, rank: int, port: int, tmp: Path) -> dict[str, str]:
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    if style == "sagemaker":  # one process per "host", each with its own model dir
        return clean_env(**common, SM_HOSTS='["algo-1", "algo-2"]',
                         SM_CURRENT_HOST=f"algo-{rank + 1}",
                         SM_MODEL_DIR=str(tmp / f"host{rank}" / "model"),
                         SM_CHECKPOINT_DIR=str(tmp / f"host{rank}" / "ckpt"))
    return clean_env(**common, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                     LOCAL_WORLD_SIZE="2", SM_MODEL_DIR=str(tmp / f"host{rank}" / "model"),
                     SM_CHECKPOINT_DIR=str(tmp / f"host{rank}" / "ckpt"))


def test_rank_layout_from_sagemaker_and_torchrun_env() -> None:
    sm = {"SM_HOSTS": '["algo-1","algo-2","algo-3"]', "SM_CURRENT_HOST": "algo-3"}
    assert detect(sm) == (DistInfo(2, 3, 0), {"MASTER_ADDR": "algo-1", "MASTER_PORT": "29500"})
    local = {**sm, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "4000"}
    assert detect(local)[1] == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "4000"}
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1",
                "MASTER_PORT": "5000"}
    assert detect(torchrun) == (DistInfo(1, 2, 1),
                                {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "5000"})
    assert detect({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"})[0].enabled is False
    with pytest.raises(InputError, match="not in SM_HOSTS"):
        detect({**sm, "SM_CURRENT_HOST": "algo-9"})
    with pytest.raises(InputError, match="not a JSON list"):
        detect({"SM_HOSTS": "algo-1,algo-2"})


@pytest.mark.parametrize("style", ["sagemaker"])
def test_two_process_gloo_run_rank0_writes(style: str, tiny_data: Path, tmp_path: Path) -> None:
    port = _free_port()
    args = [sys.executable, "-m", "training.train", "--data", str(tiny_data), *FAST_ARGS,
            "--epochs", "6", "--patience", "0"]
    procs = [subprocess.Popen(args, env=_launch_env(style, rank, port, tmp_path), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    rank0, rank1 = outputs[0][0], outputs[1][0]
    assert [int(r["epoch"]) for r in metric_lines(rank0, "epoch")] == list(range(1, 7))
    assert metric_lines(rank1, "epoch") == [] and "test_acc" not in rank1  # rank 1 is quiet
    model0 = tmp_path / "host0" / "model"
    assert {"model.pth", "classes.json", "hyperparameters.json", "metrics.json"} <= {
        p.name for p in model0.iterdir()}
    assert not (tmp_path / "host1").exists()  # rank 1 wrote nothing at all
    metrics = json.loads((model0 / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["num_train"] == 24 and metrics["test_acc"] > 0.6

    # Sharded, all-gathered, re-ordered features: 2 ranks x batch 8 take exactly the steps
    # of 1 process with batch 16.
    single = tmp_path / "single"
    argv = ["--data", str(tiny_data), "--model-dir", str(single / "model"), "--checkpoint-dir",
            str(single / "ckpt"), *FAST_ARGS, "--epochs", "6", "--patience", "0",
            "--batch-size", "16"]
    assert train_main(argv) == 0
    alone = json.loads((single / "model" / "metrics.json").read_text())
    for a, b in zip(alone["history"], metrics["history"], strict=True):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
