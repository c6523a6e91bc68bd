"""Test accuracy of the two training modes on real photos available offline (issue 11).

The photos: scikit-learn's bundled handwritten digits (1,797 scanned 8 × 8 grey images of 10
classes, UCI "Optical Recognition of Handwritten Digits", shipped inside the package, so nothing
is downloaded), upscaled to 32 px RGB PNGs in train/valid/test folders (70/15/15, stratified,
seeded). No pretrained weights can be fetched here, so both runs start from the same randomly
initialised resnet18 (``weights none``):

  frozen backbone + head   the default: the backbone's features once, then the head's epochs
  full fine-tune           ``train-backbone true``: every layer trained

Run: .venv/bin/python -m benchmarks.bench_transfer [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.machine import write_report
from training.train import main as train_main

SPLITS = (("train", 0.70), ("valid", 0.15), ("test", 0.15))


def write_digits(root: Path, size: int = 32, seed: int = 0) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(digits.target):
        by_class.setdefault(int(label), []).append(index)
    counts = {name: 0 for name, _ in SPLITS}
    rng = random.Random(seed)
    for label, indices in sorted(by_class.items()):
        rng.shuffle(indices)
        cut_train = int(len(indices) * SPLITS[0][1])
        cut_valid = cut_train + int(len(indices) * SPLITS[1][1])
        parts = {"train": indices[:cut_train], "valid": indices[cut_train:cut_valid],
                 "test": indices[cut_valid:]}
        for split, members in parts.items():
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in members:
                pixels = (digits.images[index] * (255 / 16)).astype("uint8")
                image = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
                image.convert("RGB").save(folder / f"{index}.png")
                counts[split] += 1
    return counts


def train(data: Path, out: Path, epochs: int, full: bool) -> dict[str, Any]:
    argv = ["--data", str(data), "--model-dir", str(out), "--arch", "resnet18", "--image-size", "32",
            "--epochs", str(epochs), "--weights", "none", "--batch-size", "32", "--patience", "0",
            "--seed", "0"]
    if full:
        argv += ["--train-backbone", "true", "--lr", "0.001"]
    started = time.monotonic()
    code = train_main(argv)
    if code:
        raise RuntimeError(f"training failed with exit code {code}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"mode": "full fine-tune" if full else "frozen backbone + head",
            "seconds": round(time.monotonic() - started, 1), "test_acc": metrics.get("test_acc"),
            "best_valid_acc": metrics.get("best_valid_acc")}


def markdown(results: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    lines = [f"scikit-learn digits as 32 px photos ({setup['counts']}), resnet18 from random init "
             f"(no pretrained weights offline), {setup['epochs']} epochs, seed 0.", "",
             "| mode | test accuracy | best valid accuracy | wall s |", "|---|---|---|---|"]
    for row in results:
        lines.append(f"| {row['mode']} | **{row['test_acc']:.3f}** | {row['best_valid_acc']:.3f} | "
                     f"{row['seconds']} |")
    lines += ["", f"Load average {setup['load_before']} before / {setup['load_after']} after."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="stepml-digits-") as folder:
        root = Path(folder)
        counts = write_digits(root / "data")
        results = [train(root / "data", root / name, args.epochs, full)
                   for name, full in (("frozen", False), ("full", True))]
    setup = {"counts": counts, "epochs": args.epochs, "load_before": load_before,
             "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg())}
    path = write_report("transfer", {"setup": setup, "results": results}, markdown(results, setup))
    print(path.read_text())


if __name__ == "__main__":
    main()
