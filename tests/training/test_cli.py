"""`stepml make-dataset` and `stepml tune`, registered on a fresh click group."""
from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from infra_scripts.commands.training_cli import register


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    register(cli)
    return cli


def test_register_adds_commands() -> None:
    assert {"make-dataset", "tune"} <= set(_cli().commands)


def test_make_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["make-dataset", str(tmp_path / "d"), "--classes", "2",
                                         "--per-class", "10", "--size", "16", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "wrote 20 images" in result.output
    assert len(list((tmp_path / "d").rglob("*.jpg"))) == 20
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["test", "train", "valid"]


def test_make_dataset_rejects_one_class(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["make-dataset", str(tmp_path / "d"), "--classes", "1"])
    assert result.exit_code == 2 and "--classes" in result.output
    assert not (tmp_path / "d").exists()


def _fake_tuning(calls: list):
    """Stands in for run_local_tuning (tested with real trials in test_hpo.py)."""
    def run(data, trials, epochs, seed, workdir, on_trial, extra_args):
        calls.append({"data": data, "trials": trials, "epochs": epochs, "extra": extra_args})
        done = [{"trial": k, "hyperparameters": {"lr": 0.01 * k, "batch-size": 16},
                 "metrics": {"best_valid_loss": 1.0 / k, "best_valid_acc": 0.5},
                 "status": "Completed", "reason": None, "model_dir": f"/w/trial-{k}/model"}
                for k in range(1, trials + 1)]
        for trial in done:
            on_trial(trial)
        return {"objective": {"name": "best_valid_loss", "type": "Minimize"},
                "best": done[-1], "trials": done, "workdir": "/w"}
    return run


def test_tune_prints_table_and_best(monkeypatch, tmp_path: Path) -> None:
    calls: list = []
    monkeypatch.setattr("training.hpo.run_local_tuning", _fake_tuning(calls))
    result = CliRunner().invoke(_cli(), ["tune", "--data", "s3://b/d", "--trials", "3",
                                         "--epochs", "5", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert calls == [{"data": "s3://b/d", "trials": 3, "epochs": 5,
                      "extra": ["--image-size", "32"]}]
    assert "trial 3: {'lr': 0.03, 'batch-size': 16} -> best_valid_loss=0.3333" in result.output
    assert 'best: trial 3 {"lr": 0.03, "batch-size": 16}' in result.output


def test_tune_json(monkeypatch) -> None:
    monkeypatch.setattr("training.hpo.run_local_tuning", _fake_tuning([]))
    result = CliRunner().invoke(_cli(), ["tune", "--data", "d", "--trials", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["best"]["trial"] == 2


def test_tune_reports_bad_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["tune", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "data directory not found" in result.output
