"""The entry point: learning, the SageMaker contract, resume, unreadable images, bad input."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torchvision import models

from tests.training.conftest import FAST_ARGS, REPO, clean_env, metric_lines, run_entry
from training.dataset import class_names
from training.model import load_trained
from training.train import main

ARTIFACTS = {"model.pth", "classes.json", "hyperparameters.json", "metrics.json"}


def _train(data: Path, out: Path, *extra: str) -> dict:
    assert main(["--data", str(data), "--model-dir", str(out / "model"),
                 "--checkpoint-dir", str(out / "ckpt"), *FAST_ARGS, *extra]) == 0
    return json.loads((out / "model" / "metrics.json").read_text())


def test_tiny_dataset_trains_well_above_chance(tiny_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    metrics = _train(tiny_data, tmp_path)
    assert metrics["test_acc"] >= 0.9  # chance is 1/3
    assert metrics["best_valid_acc"] >= 0.9
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    out = capsys.readouterr().out
    epochs = metric_lines(out, "epoch")
    assert [list(row) for row in epochs[:1]] == [
        ["epoch", "train_loss", "valid_loss", "valid_acc", "seconds"]]
    assert float(metric_lines(out, "test_acc")[0]["test_acc"]) == pytest.approx(
        metrics["test_acc"], abs=1e-4)
    assert "skipped_images=0" in out.splitlines()


def test_sagemaker_env_contract(tiny_data: Path, tmp_path: Path) -> None:
    """SM_* env as a training job sees it; hyperparameters spelled as SageMaker passes them."""
    model, output = tmp_path / "opt/ml/model", tmp_path / "opt/ml/output/data"
    env = clean_env(SM_CHANNEL_TRAINING=str(tiny_data), SM_MODEL_DIR=str(model),
                    SM_OUTPUT_DATA_DIR=str(output), SM_OUTPUT_DIR=str(output.parent),
                    SM_HOSTS='["algo-1"]', SM_CURRENT_HOST="algo-1", SM_NUM_CPUS="2",
                    SM_NUM_GPUS="0", SM_CHECKPOINT_DIR=str(tmp_path / "ckpt"))
    hyper = ["--arch", '"resnet18"', "--epochs", "12", "--batch_size", "8", "--image_size", "32",
             "--lr", "0.01", "--train_backbone", "false", "--workers", "1",
             "--sagemaker_program", "train.py"]
    proc = run_entry(hyper, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ARTIFACTS <= {p.name for p in model.iterdir()}
    classes = json.loads((model / "classes.json").read_text())
    assert classes == {str(i): name for i, name in enumerate(class_names(3))}
    hyper_used = json.loads((model / "hyperparameters.json").read_text())
    assert (hyper_used["arch"], hyper_used["image_size"], hyper_used["num_classes"]) == (
        "resnet18", 32, 3)
    assert (hyper_used["batch_size"], hyper_used["train_backbone"]) == (8, False)
    assert json.loads((output / "metrics.json").read_text())["test_acc"] > 0.6
    assert [int(r["epoch"]) for r in metric_lines(proc.stdout, "epoch")] == list(range(1, 13))
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    net, names, _ = load_trained(model)
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, len(names))


def test_separate_channels(tiny_data: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    for split in ("train", "valid", "test"):
        monkeypatch.setenv(f"SM_CHANNEL_{split.upper()}", str(tiny_data / split))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    assert main([*FAST_ARGS, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c")]) == 0
    assert ARTIFACTS <= {p.name for p in (tmp_path / "model").iterdir()}


def test_resume_continues_from_checkpoint(tiny_data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    straight = _train(tiny_data, tmp_path / "straight", "--epochs", "4", "--patience", "0")
    capsys.readouterr()
    _train(tiny_data, tmp_path / "spot", "--epochs", "2", "--patience", "0")  # "interrupted"
    capsys.readouterr()
    resumed = _train(tiny_data, tmp_path / "spot", "--epochs", "4", "--patience", "0")
    out = capsys.readouterr().out
    assert "resumed_from_epoch=2" in out.splitlines()
    assert [int(r["epoch"]) for r in metric_lines(out, "epoch")] == [3, 4]
    assert resumed["resumed_from_epoch"] == 2
    # Shuffles depend on (seed, epoch) only: the resumed run equals an uninterrupted one.
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        assert (a["epoch"], a["valid_loss"]) == (b["epoch"], pytest.approx(b["valid_loss"]))
    assert straight["test_loss"] == pytest.approx(resumed["test_loss"])


def test_changed_configuration_does_not_resume(tiny_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    _train(tiny_data, tmp_path, "--epochs", "2")
    capsys.readouterr()
    _train(tiny_data, tmp_path, "--epochs", "2", "--lr", "0.003")
    captured = capsys.readouterr()
    assert "different configuration" in captured.err
    assert [int(r["epoch"]) for r in metric_lines(captured.out, "epoch")] == [1, 2]


def test_unreadable_images_are_skipped_and_counted(data_copy: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    names = class_names(3)
    (data_copy / "train" / names[0] / "garbage.jpg").write_bytes(b"\x00not an image")
    good = next((data_copy / "test" / names[1]).glob("*.jpg")).read_bytes()
    (data_copy / "test" / names[1] / "truncated.jpg").write_bytes(good[: len(good) // 2])
    metrics = _train(data_copy, tmp_path, "--epochs", "3")
    captured = capsys.readouterr()
    assert "skipped_images=2" in captured.out.splitlines()
    assert metrics["skipped_images"] == 2
    assert {Path(p).name for p in metrics["skipped_files"]} == {"garbage.jpg", "truncated.jpg"}
    assert captured.err.count("warning: skipped unreadable image") == 2
    assert metrics["num_train"] == 3 * 8 + 1  # the file is listed, just never used


@pytest.mark.parametrize("extra", [["--train-backbone", "--epochs", "2"],
                                   ["--augment", "--epochs", "2"],
                                   ["--no-cache-features", "--epochs", "2"],
                                   ["--augment", "true", "--bf16", "--epochs", "1"]])
def test_other_modes_run(tiny_data: Path, tmp_path: Path, extra: list[str]) -> None:
    metrics = _train(tiny_data, tmp_path, *extra)
    assert len(metrics["history"]) == int(extra[-1])
    assert 0.0 <= metrics["test_acc"] <= 1.0
    load_trained(tmp_path / "model")


def test_frozen_backbone_is_unchanged_and_weights_file_is_used(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(123)
    reference = models.resnet18(weights=None).state_dict()  # torchvision layout, 1000-way fc
    torch.save(reference, tmp_path / "resnet18-local.pth")
    _train(tiny_data, tmp_path, "--epochs", "2", "--weights", str(tmp_path / "resnet18-local.pth"))
    assert "warning: no pretrained" not in capsys.readouterr().err
    trained = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    assert torch.equal(trained["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert torch.equal(trained["bn1.running_mean"], reference["bn1.running_mean"])
    hyper = json.loads((tmp_path / "model" / "hyperparameters.json").read_text())
    assert hyper["pretrained"].endswith("resnet18-local.pth")


def test_missing_pretrained_weights_warn_once(tiny_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    _train(tiny_data, tmp_path, "--epochs", "1")
    err = capsys.readouterr().err
    assert err.count("warning: no pretrained resnet18 weights") == 1


def test_weights_none_trains_from_random_without_a_warning(tiny_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    _train(tiny_data, tmp_path, "--epochs", "1", "--weights", "none")
    assert "warning: no pretrained" not in capsys.readouterr().err
    assert json.loads((tmp_path / "model" / "hyperparameters.json").read_text())["pretrained"] is None


def test_weights_imagenet_uses_the_torch_cache(tiny_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A file already in the job's torch cache is used as is: nothing is downloaded."""
    from training.model import cached_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    cached = cached_weights_path("resnet18")
    cached.parent.mkdir(parents=True)
    torch.manual_seed(7)
    reference = models.resnet18(weights=None).state_dict()
    torch.save(reference, cached)
    _train(tiny_data, tmp_path, "--epochs", "1", "--weights", "imagenet")
    trained = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    assert torch.equal(trained["layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"])
    used = json.loads((tmp_path / "model" / "hyperparameters.json").read_text())["pretrained"]
    assert used == str(cached)


def test_weights_imagenet_without_network_fails_fast_with_what_to_do(tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    """As in a network-isolated job: an empty torch cache and no way out."""
    env = clean_env(TORCH_HOME=str(tmp_path / "empty-torch-home"), HTTPS_PROXY="http://127.0.0.1:9",
                    HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1")
    proc = run_entry(["--data", str(tiny_data), "--model-dir", str(tmp_path / "model"), *FAST_ARGS,
                      "--weights", "imagenet"], env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1 and "resnet18's ImageNet weights are not in the torch cache" in error[0]
    assert "training.weights as an s3:// URI of the weights file, or none" in error[0]
    assert not (tmp_path / "model" / "model.pth").exists()


def _empty_class(root: Path) -> None:
    for p in (root / "train" / class_names(3)[2]).iterdir():
        p.unlink()


def _one_class(root: Path) -> None:
    for split in ("train", "valid", "test"):
        for name in class_names(3)[1:]:
            shutil.rmtree(root / split / name)


def _mismatch(root: Path) -> None:
    (root / "valid" / class_names(3)[0]).rename(root / "valid" / "999.other")


def _all_test_unreadable(root: Path) -> None:
    for p in (root / "test").rglob("*.jpg"):
        p.write_bytes(b"broken")


BAD_INPUT = [
    ("no data", None, [], "no training data"),
    ("missing split", lambda r: shutil.rmtree(r / "test"), [], "missing test split"),
    ("empty class", _empty_class, [], "empty class folder"),
    ("one class", _one_class, [], "at least 2 class folders, found 1"),
    ("mismatch", _mismatch, [], "class folders differ between train and valid"),
    ("unreadable split", _all_test_unreadable, [], "no readable images in the test split"),
    ("negative lr", None, ["--lr", "-0.1"], "invalid hyperparameter lr=-0.1"),
    ("batch 0", None, ["--batch-size", "0"], "invalid hyperparameter batch_size=0"),
    ("zero epochs", None, ["--epochs", "0"], "invalid hyperparameter epochs=0"),
    ("not a number", None, ["--lr", "fast"], "invalid number value: 'fast'"),
    ("bad bool", None, ["--augment", "maybe"], "expected true or false"),
    ("bad arch", None, ["--arch", "vgg16"], "invalid choice: 'vgg16'"),
    ("unknown key", None, ["--learning-rate", "0.1"], "unknown hyperparameter(s): --learning-rate"),
    ("no weights file", None, ["--weights", "/nonexistent.pth"], "weights file not found"),
]


@pytest.mark.parametrize("name, mutate, extra, message", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_one_line_error_and_exit_2(name: str, mutate, extra: list[str], message: str,
                                             data_copy: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    if mutate:
        mutate(data_copy)
    data = [] if name == "no data" else ["--data", str(data_copy)]
    out = tmp_path / "output" / "data"
    argv = [*data, "--model-dir", str(tmp_path / "model"), "--output-data-dir", str(out),
            *FAST_ARGS, "--epochs", "1", *extra]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("warning:")]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert (out / "failure").read_text().strip() == err[0].removeprefix("error: ")
    assert (out.parent / "failure").is_file()  # SageMaker's /opt/ml/output/failure spot
    assert not (tmp_path / "model" / "model.pth").exists()


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    env = clean_env(SM_OUTPUT_DIR=str(tmp_path / "output"))
    proc = run_entry(["--data", str(tmp_path / "nowhere"), "--epochs", "1"], env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: data directory not found: {tmp_path / 'nowhere'}"]
    assert (tmp_path / "output" / "failure").read_text().startswith("data directory not found")


def test_runs_as_a_file_like_sagemaker_entry_point(tmp_path: Path) -> None:
    """SageMaker may run `python training/train.py`: the package must still import."""
    import subprocess
    proc = subprocess.run([sys.executable, str(REPO / "training" / "train.py"), "--lr", "0"],
                          cwd=tmp_path, env=clean_env(PYTHONPATH=""), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: invalid hyperparameter lr=0.0: must be > 0"
