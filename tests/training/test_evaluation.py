"""evaluation.json: the report math, the candidate's report, and the live model (the baseline)
scored on the candidate's test split, from a tarball, a directory, a channel or S3."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.training.conftest import FAST_ARGS, REPO
from tests.training.test_ddp import _free_port, _launch_env
from training import hpo
from training.dataset import class_names
from training.evaluation import (
    SCHEMA,
    BaselineError,
    classification_report,
    load_baseline,
    split_digest,
)
from training.train import _baseline_report, main

TRAINED = [*FAST_ARGS, "--weights", "none"]  # 30 epochs with early stopping: a good baseline
QUICK = [*FAST_ARGS, "--epochs", "2", "--weights", "none"]  # a candidate, quality irrelevant
NAMES = class_names(3)


def _run(data: Path, out: Path, *extra: str) -> tuple[dict, dict]:
    """Train in-process; (metrics.json, evaluation.json) of the model dir."""
    assert main(["--data", str(data), "--model-dir", str(out / "model"), "--checkpoint-dir",
                 str(out / "ckpt"), "--output-data-dir", str(out / "output"), *extra]) == 0
    model = out / "model"
    return (json.loads((model / "metrics.json").read_text()),
            json.loads((model / "evaluation.json").read_text()))


def _tar(model_dir: Path, dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """model.tar.gz as SageMaker packs a model dir: its files at the archive's root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "live" model: one well trained run on the tiny data; its model dir."""
    out = tmp_path_factory.mktemp("live")
    _run(tiny_data, out, *TRAINED)
    return out / "model"


# --------------------------------------------------------------------------- report math
def test_report_on_a_hand_made_example() -> None:
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 1, 0], ["a", "b", "c"])
    assert report["confusion_matrix"] == {"classes": ["a", "b", "c"],
                                          "matrix": [[2, 1, 0], [0, 2, 0], [1, 0, 0]]}
    assert report["accuracy"] == pytest.approx(4 / 6) and report["num_images"] == 6
    assert report["per_class"] == {
        "a": {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "support": 3},
        "b": {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "support": 1}}  # never predicted: precision 0


def test_predictions_outside_the_classes_count_as_wrong() -> None:
    report = classification_report([0, 1, 1], [0, -1, 1], ["a", "b"])
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"]["matrix"] == [[1, 0], [0, 1]]  # the -1 is in no column
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert classification_report([], [], ["a", "b"])["accuracy"] == 0.0
    with pytest.raises(ValueError):
        classification_report([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError):
        classification_report([2], [0], ["a", "b"])


def test_split_digest_depends_on_names_and_sizes_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    files = [tmp_path / "a" / "1.jpg", tmp_path / "a" / "2.jpg"]
    for f in files:
        f.write_bytes(b"xx")
    digest = split_digest(tmp_path, files)
    assert split_digest(tmp_path, files[::-1]) == digest
    files[1].write_bytes(b"yy")  # same size: the digest is about the file list, not pixels
    assert split_digest(tmp_path, files) == digest
    files[1].write_bytes(b"yyy")
    assert split_digest(tmp_path, files) != digest


def test_metric_definitions_read_the_baseline_line_without_cross_talk() -> None:
    log = "test_acc=0.9000 test_loss=0.2000\nbaseline_test_acc=0.5000\n"
    found = hpo.parse_metrics(log)
    assert (found["test_acc"], found["baseline_test_acc"]) == (0.9, 0.5)
    assert "baseline_test_acc" not in hpo.parse_metrics("test_acc=0.9000\n")


# --------------------------------------------------------------------------- the candidate
def test_candidate_report_is_written_beside_the_model_and_matches_test_acc(
        trained: Path, tiny_data: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    report = json.loads((trained / "evaluation.json").read_text())
    assert report == json.loads((trained.parent / "output" / "evaluation.json").read_text())
    assert report["schema"] == SCHEMA and report["baseline"] is None
    assert report["candidate"]["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    test_files = sorted(p for p in (tiny_data / "test").rglob("*.jpg"))
    assert report["test_split"] == {"num_images": 12, "classes": NAMES,
                                    "digest": split_digest(tiny_data / "test", test_files)}
    matrix = report["candidate"]["confusion_matrix"]["matrix"]
    assert [sum(row) for row in matrix] == [4, 4, 4]
    assert [set(row) for row in report["history"]] == [
        {"epoch", "train_loss", "valid_loss", "valid_acc"}] * len(metrics["history"])
    assert [row["epoch"] for row in report["history"]] == [r["epoch"] for r in metrics["history"]]


# --------------------------------------------------------------------------- the baseline
def _expect_live_score(report: dict, trained: Path, out: str) -> None:
    """The baseline, scored on the same split, scores exactly what it scored as a candidate."""
    live = json.loads((trained / "evaluation.json").read_text())["candidate"]
    baseline = report["baseline"]
    assert baseline["accuracy"] == pytest.approx(live["accuracy"], abs=1e-6)
    assert baseline["confusion_matrix"] == live["confusion_matrix"]
    assert (baseline["classes_missing"], baseline["unmapped_predictions"]) == ([], 0)
    assert hpo.parse_metrics(out)["baseline_test_acc"] == pytest.approx(baseline["accuracy"], abs=1e-4)
    assert f"baseline_test_acc={baseline['accuracy']:.4f}" in out.splitlines()


@pytest.mark.parametrize("form", ["tar", "model dir", "channel dir holding the tar"])
def test_baseline_from_a_tarball_or_a_directory(form: str, trained: Path, tiny_data: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tar = _tar(trained, tmp_path / "channel" / "model.tar.gz")
    extra = {"tar": ["--baseline", str(tar)], "model dir": ["--baseline", str(trained)],
             # the channel wins over the flag: the EC2-style URI is not even looked at
             "channel dir holding the tar": ["--baseline", str(tmp_path / "nowhere.tar.gz")]}[form]
    if form.startswith("channel"):
        monkeypatch.setenv("SM_CHANNEL_BASELINE", str(tar.parent))
    metrics, report = _run(tiny_data, tmp_path / "run", *QUICK, *extra)
    captured = capsys.readouterr()
    _expect_live_score(report, trained, captured.out)
    assert report["candidate"]["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert "warning: baseline" not in captured.err


def test_candidate_without_cached_features_matches_test_acc(trained: Path, tiny_data: Path,
                                                            tmp_path: Path) -> None:
    """The image path (no feature cache) predicts the candidate like fit()'s evaluation did."""
    metrics, report = _run(tiny_data, tmp_path, *QUICK, "--no-cache-features",
                           "--baseline", str(trained))
    assert report["candidate"]["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert report["baseline"]["accuracy"] >= 0.9


def test_baseline_from_s3(trained: Path, tiny_data: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture) -> None:
    tar = _tar(trained, tmp_path / "model.tar.gz")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt")
        s3.upload_file(str(tar), "bkt", "live/output/model.tar.gz")
        _, report = _run(tiny_data, tmp_path / "run", *QUICK,
                         "--baseline", "s3://bkt/live/output/model.tar.gz")
        missing = _baseline_report("s3://bkt/none/model.tar.gz", str(tiny_data / "test"), NAMES,
                                   None, tmp_path / "staging")
    _expect_live_score(report, trained, capsys.readouterr().out)
    assert set(missing) == {"error"} and "404" in missing["error"]


def test_baseline_with_another_class_set(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A baseline that knows '999.other' instead of the candidate's third class: that class is
    missing, and every prediction of '999.other' counts as wrong."""
    other = Path(shutil.copytree(tiny_data, tmp_path / "other"))
    for split in ("train", "valid", "test"):
        (other / split / NAMES[2]).rename(other / split / "999.other")
    _run(other, tmp_path / "live", *TRAINED)
    _, report = _run(tiny_data, tmp_path / "run", *QUICK, "--baseline",
                     str(tmp_path / "live" / "model"))
    baseline = report["baseline"]
    matrix = baseline["confusion_matrix"]["matrix"]
    assert baseline["classes_missing"] == [NAMES[2]]
    assert baseline["per_class"][NAMES[2]] == {"precision": 0.0, "recall": 0.0, "support": 4}
    assert [row[2] for row in matrix] == [0, 0, 0]  # the baseline cannot predict it
    # The third class's images look like '999.other' to it: predicted, unmapped, wrong.
    assert baseline["unmapped_predictions"] >= 3
    assert baseline["unmapped_predictions"] == 12 - sum(map(sum, matrix))
    assert baseline["accuracy"] == pytest.approx(sum(matrix[k][k] for k in range(3)) / 12)
    assert baseline["accuracy"] <= 8 / 12


# --------------------------------------------------------------------------- broken baselines
def test_load_baseline_refuses_what_it_cannot_trust(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        "dotdot": (_tar(trained, tmp_path / "a" / "m.tar.gz", {"../x": b"x"}), "unsafe member '../x'"),
        "absolute": (_tar(trained, tmp_path / "b" / "m.tar.gz", {"/tmp/x": b"x"}), "unsafe member"),
        "not a tar": (tmp_path / "garbage.tar.gz", "cannot unpack"),
        "no model": (_tar(tmp_path / "empty", tmp_path / "c" / "m.tar.gz"), "lacks model.pth"),
        "two tars": (tmp_path / "two", "found 2 archives"),
        "missing": (tmp_path / "nowhere", "baseline not found"),
    }
    (tmp_path / "garbage.tar.gz").write_bytes(b"not a tarball")
    for name in ("1", "2"):
        _tar(trained, tmp_path / "two" / name / "model.tar.gz")
    for path, message in cases.values():
        with pytest.raises(BaselineError, match=message):
            load_baseline(path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "a" / "x").exists()


@pytest.mark.parametrize("kind", ["missing path", "tar with ../x"])
def test_a_broken_baseline_is_recorded_and_training_succeeds(
        kind: str, trained: Path, tiny_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    path = (tmp_path / "nowhere" if kind == "missing path" else
            _tar(trained, tmp_path / "evil" / "model.tar.gz", {"../x": b"escaped"}))
    metrics, report = _run(tiny_data, tmp_path / "run", *QUICK, "--baseline", str(path))
    captured = capsys.readouterr()
    assert set(report["baseline"]) == {"error"}
    assert ("baseline not found" if kind == "missing path" else "unsafe member '../x'") in \
        report["baseline"]["error"]
    assert f"warning: baseline not evaluated: {report['baseline']['error']}" in captured.err
    assert "baseline_test_acc" not in captured.out
    assert report["candidate"]["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert (tmp_path / "run" / "model" / "model.pth").is_file()
    assert not (tmp_path / "evil" / "x").exists() and not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- DDP
def test_two_ranks_rank0_reports_and_nobody_hangs(trained: Path, tiny_data: Path,
                                                  tmp_path: Path) -> None:
    """Rank 0 evaluates alone after fit(); rank 1 waits at the final barrier, then exits."""
    tar = _tar(trained, tmp_path / "live" / "model.tar.gz")
    port = _free_port()
    args = [sys.executable, "-m", "training.train", "--data", str(tiny_data), *QUICK,
            "--baseline", str(tar)]
    procs = [subprocess.Popen(args, env=_launch_env("sagemaker", rank, port, tmp_path), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    model0 = tmp_path / "host0" / "model"
    report = json.loads((model0 / "evaluation.json").read_text())
    metrics = json.loads((model0 / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert report["candidate"]["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    _expect_live_score(report, trained, outputs[0][0])
    assert "baseline_test_acc" not in outputs[1][0] and not (tmp_path / "host1").exists()
