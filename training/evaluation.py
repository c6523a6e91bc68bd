"""The evaluation report: per-class precision/recall and a confusion matrix over the test split,
for the candidate just trained and for a baseline (the live model) on the very same images.

Evaluation for the report runs in one process (rank 0 under DDP): the test split is small, and
the other ranks wait for it at the final barrier (distributed.shutdown). A baseline is only
ever compared by class *name*: its own output order, image size and transform may differ.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

import torch
from torch import nn

from training.engine import EVAL_BATCH, Context, Splits, autocast, loader, to_device

SCHEMA = "stepml.evaluation/1"
ARCHIVE = "model.tar.gz"
MODEL_FILES = ("model.pth", "classes.json", "hyperparameters.json")
UNKNOWN = -1  # a baseline prediction of a class the candidate lacks: never equals a true label


class BaselineError(Exception):
    """The baseline cannot be loaded or evaluated; recorded in the report, never fatal."""


# --------------------------------------------------------------------------- report math
def classification_report(y_true: list[int], y_pred: list[int], classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: true class,
    columns: predicted class, both in `classes` order). A prediction outside range(len(classes))
    counts as wrong and appears in no column, so such a row sums to less than its support."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    n = len(classes)
    matrix = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred, strict=True):
        if not 0 <= t < n:
            raise ValueError(f"true label {t} is not a class index (0..{n - 1})")
        if 0 <= p < n:
            matrix[t][p] += 1
    support = Counter(y_true)
    correct = sum(matrix[k][k] for k in range(n))
    per_class = {}
    for k, name in enumerate(classes):
        predicted = sum(row[k] for row in matrix)
        per_class[name] = {"precision": matrix[k][k] / predicted if predicted else 0.0,
                           "recall": matrix[k][k] / support[k] if support[k] else 0.0,
                           "support": support[k]}
    return {"accuracy": correct / len(y_true) if y_true else 0.0, "num_images": len(y_true),
            "per_class": per_class, "confusion_matrix": {"classes": list(classes), "matrix": matrix}}


# --------------------------------------------------------------------------- predictions
def predict_images(net: nn.Module, dataset, ctx: Context) -> tuple[list[int], list[int]]:
    """(true labels, predicted indices) over a whole split in this process alone; unreadable
    images are left out (training already counted and reported them)."""
    y_true: list[int] = []
    y_pred: list[int] = []
    net.eval()
    with torch.inference_mode(), autocast(ctx):
        for x, y, _bad in loader(dataset, ctx, EVAL_BATCH):
            if len(y):
                y_pred += net(to_device(x, ctx)).float().argmax(1).tolist()
                y_true += y.tolist()
    return y_true, y_pred


def predict_split(net: nn.Module, splits: Splits, split: str, ctx: Context
                  ) -> tuple[list[int], list[int]]:
    """The candidate's predictions the way fit() scored it: from the cached backbone features
    when there are any (the same head on the same tensors, so accuracy matches test_acc)."""
    if split in splits.cached:
        x, y = splits.cached[split]
        with torch.inference_mode():
            return y.tolist(), net.fc(x).argmax(1).tolist()
    return predict_images(net, getattr(splits, split), ctx)


# --------------------------------------------------------------------------- the split
def split_digest(root: str | Path, files: list[str | Path]) -> str:
    """sha256 over the sorted (relative path, size) pairs: two reports with the same digest
    were computed on the same test images."""
    root = Path(root)
    rows = sorted((Path(f).relative_to(root).as_posix(), Path(f).stat().st_size) for f in files)
    digest = hashlib.sha256()
    for rel, size in rows:
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()


def split_summary(dataset, classes: list[str]) -> dict:
    files = [path for path, _ in dataset.samples]
    return {"num_images": len(files), "classes": list(classes),
            "digest": split_digest(dataset.root, files)}


# --------------------------------------------------------------------------- the baseline
def load_baseline(path: str | Path) -> tuple[nn.Module, list[str], int]:
    """(net in eval mode on the CPU, class names in output order, image size) of a trained model:
    a model.tar.gz, a directory holding one (an S3 object copied into a SageMaker channel), or
    an extracted model dir."""
    from training.model import load_trained

    source = Path(path)
    if source.is_dir() and all((source / name).is_file() for name in MODEL_FILES):
        return _unpack(*load_trained(source))
    archive = _archive_in(source)
    with tempfile.TemporaryDirectory(prefix="stepml-baseline-") as tmp:
        _extract(archive, Path(tmp))
        missing = [name for name in MODEL_FILES if not (Path(tmp) / name).is_file()]
        if missing:
            raise BaselineError(f"{archive} lacks {', '.join(missing)}")
        return _unpack(*load_trained(tmp))  # loaded into memory: the temp dir may go


def _unpack(net: nn.Module, classes: list[str], hyper: dict) -> tuple[nn.Module, list[str], int]:
    size = hyper.get("image_size", hyper.get("image-size"))
    if not isinstance(size, int):
        raise BaselineError(f"hyperparameters.json has no integer image_size: {size!r}")
    return net, classes, size


def _archive_in(source: Path) -> Path:
    if source.is_file():
        return source
    if not source.is_dir():
        raise BaselineError(f"baseline not found: {source}")
    found = sorted(p for p in source.rglob("*.tar.gz") if p.is_file())
    if len(found) != 1:
        raise BaselineError(f"the baseline dir {source} must hold one {ARCHIVE} or the model files "
                            f"({', '.join(MODEL_FILES)}); found {len(found)} archives")
    return found[0]


def _extract(archive: Path, dest: Path) -> None:
    """Unpack, refusing absolute and `..` member names outright (the "data" filter would strip
    a leading slash and carry on); the filter still guards links and special files."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise BaselineError(f"unsafe member {member.name!r} in {archive}")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BaselineError(f"cannot unpack {archive}: {exc}") from None


def evaluate_baseline(path: str | Path, test_dir: str | Path, classes: list[str], ctx: Context) -> dict:
    """The baseline's report on the candidate's test split, in the candidate's class indices."""
    from training.dataset import eval_transform, image_folder

    net, known, size = load_baseline(path)
    net = net.to(ctx.device, memory_format=torch.channels_last)
    dataset = image_folder(Path(test_dir), eval_transform(size))
    y_true, raw = predict_images(net, dataset, ctx)
    to_candidate = {name: i for i, name in enumerate(classes)}
    y_pred = [to_candidate.get(known[p], UNKNOWN) for p in raw]
    report = classification_report(y_true, y_pred, classes)
    report["classes_missing"] = [name for name in classes if name not in set(known)]
    report["unmapped_predictions"] = sum(p == UNKNOWN for p in y_pred)
    return report


def build_report(test_split: dict, candidate: dict, baseline: dict | None, history: list[dict]
                 ) -> dict:
    keep = ("epoch", "train_loss", "valid_loss", "valid_acc")  # no timings: reports stay comparable
    return {"schema": SCHEMA, "test_split": test_split, "candidate": candidate,
            "baseline": baseline, "history": [{k: row[k] for k in keep} for row in history]}


def write_report(path: str | Path, report: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
