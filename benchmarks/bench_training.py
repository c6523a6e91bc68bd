"""Training throughput (issue 3): our loop vs a loop written like the seed's EC2 script.

Same model (ResNet-18, random init, frozen backbone, seed head), same generated data (the demo
defaults), same epochs and learning rate, measured in one run. The reference does what the
seed's script does: batch size 2, single-process loading, the backbone run in grad mode in
train() mode on every epoch, no caching. Ours is `training.train` with its defaults, plus two
ablations (no feature cache; augmentation). Also: achieved GFLOP/s against a large fp32 matmul
measured here, and 1 vs 2 DDP processes.

Run: .venv/bin/python -m benchmarks.bench_training
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets

from benchmarks.machine import describe, write_report
from training.config import defaults
from training.dataset import eval_transform, make_dataset
from training.model import backbone_of, build_model, set_backbone_trainable
from training.train import main as train_main

EPOCHS = 10
TARGET_ACC = 0.9  # time-to-accuracy: first epoch whose valid accuracy reaches this
REPEATS = 3  # best of, for the cheap runs: this 2-core machine is shared and noisy
REF_EPOCHS_DEFAULT_THREADS = 2  # the reference at torch's default threads is slow here
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- machine
def matmul_peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best-of fp32 GEMM rate: the ceiling the convolutions could reach."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def backbone_flops(size: int) -> float:
    net = build_model(defaults.arch, defaults.classes).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        backbone_of(net)(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------- loops
def reference_loop(data: Path, epochs: int, lr: float, seed: int, threads: int) -> dict:
    """The seed's way: batch 2, num_workers=0, train() mode, forward in grad mode."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tf = eval_transform(defaults.image_size)  # same transforms as our default run
    splits = {s: datasets.ImageFolder(str(data / s), tf) for s in ("train", "valid", "test")}
    net = build_model(defaults.arch, len(splits["train"].classes))
    set_backbone_trainable(net, False)
    opt = torch.optim.Adam(net.fc.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    train = DataLoader(splits["train"], batch_size=2, shuffle=True, num_workers=0)
    history, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        for x, y in train:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
        acc = _accuracy(net, splits["valid"])
        history.append({"epoch": epoch, "valid_acc": acc, "elapsed": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    return {"history": history, "train_seconds": seconds, "test_acc": _accuracy(net, splits["test"]),
            "images_forwarded": epochs * (len(splits["train"]) + len(splits["valid"])),
            "compute_seconds": seconds, "num_train": len(splits["train"])}


def _accuracy(net: nn.Module, dataset) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=2, num_workers=0):
            correct += (net(x).argmax(1) == y).sum().item()
    return correct / len(dataset)


def our_loop(data: Path, epochs: int, lr: float, seed: int, threads: int,
             extra: list[str]) -> dict:
    """training.train in-process (imports already paid, like the reference)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--data", str(data), "--model-dir", f"{tmp}/model", "--checkpoint-dir",
                f"{tmp}/ckpt", "--epochs", str(epochs), "--lr", str(lr), "--seed", str(seed),
                "--patience", "0", "--threads", str(threads), *extra]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert train_main(argv) == 0
        metrics = json.loads(Path(tmp, "model", "metrics.json").read_text())
    n_train, n_eval = metrics["num_train"], metrics["num_valid"] + metrics["num_test"]
    cached_train = "--augment" not in extra and "--no-cache-features" not in extra
    if "--no-cache-features" in extra:
        forwarded, compute = epochs * (n_train + metrics["num_valid"]), metrics["train_seconds"]
    elif cached_train:
        forwarded, compute = n_train + n_eval, metrics["feature_seconds"]
    else:  # augment: train images every epoch, valid/test cached once
        forwarded, compute = epochs * n_train + n_eval, metrics["train_seconds"]
    return {**metrics, "images_forwarded": forwarded, "compute_seconds": compute}


def summarise(name: str, threads: int, runs: list[dict], flops: float) -> dict:
    """Best (fastest) of the repeats; accuracy is identical across repeats (seeded)."""
    run = min(runs, key=lambda r: r["train_seconds"])
    epochs = len(run["history"])
    reached = [h["elapsed"] for h in run["history"] if h["valid_acc"] >= TARGET_ACC]
    return {"loop": name, "threads": threads, "epochs": epochs,
            "train_seconds": run["train_seconds"],
            "all_train_seconds": [r["train_seconds"] for r in runs],
            "images_per_s": run["num_train"] * epochs / run["train_seconds"],
            "time_to_acc_s": reached[0] if reached else None,
            "test_acc": run["test_acc"],
            "final_valid_acc": run["history"][-1]["valid_acc"],
            "gflops": run["images_forwarded"] * flops / run["compute_seconds"] / 1e9}


# --------------------------------------------------------------------------- DDP
def ddp_run(data: Path, processes: int, threads: int, extra: list[str]) -> dict:
    """Wall time of `processes` ranks (SageMaker-style env) on 127.0.0.1 with gloo."""
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        hosts = json.dumps([f"algo-{i + 1}" for i in range(processes)])
        procs = []
        for rank in range(processes):
            env = {**os.environ, "SM_HOSTS": hosts, "SM_CURRENT_HOST": f"algo-{rank + 1}",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "SM_MODEL_DIR": f"{tmp}/m{rank}", "SM_CHECKPOINT_DIR": f"{tmp}/c{rank}",
                   "PYTHONPATH": str(REPO)}
            args = [sys.executable, "-m", "training.train", "--data", str(data), "--patience",
                    "0", "--threads", str(threads), *extra]
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
        metrics = json.loads(Path(tmp, "m0", "metrics.json").read_text())
    return {"processes": processes, "threads_each": threads,
            "train_seconds": metrics["train_seconds"], "test_acc": metrics["test_acc"],
            "images_per_s": metrics["num_train"] * len(metrics["history"])
            / metrics["train_seconds"]}


# --------------------------------------------------------------------------- report
NAMES = {"ref": "reference (seed-like: batch 2, 0 workers, no caching)",
         "ours": "ours (defaults: cached features, batch 32)",
         "nocache": "ours, --no-cache-features",
         "augment": "ours, --augment (train features every epoch)"}


def compare(data: Path, threads: int, flops: float, ref_epochs: int, ablations: bool
            ) -> list[dict]:
    lr, seed = defaults.lr, defaults.seed
    ours = [our_loop(data, EPOCHS, lr, seed, threads, []) for _ in range(REPEATS)]
    rows = [summarise(NAMES["ref"], threads,
                      [reference_loop(data, ref_epochs, lr, seed, threads)], flops),
            summarise(NAMES["ours"], threads, ours, flops)]
    if ablations:
        for key, extra in (("nocache", ["--no-cache-features"]), ("augment", ["--augment"])):
            rows.append(summarise(NAMES[key], threads,
                                  [our_loop(data, EPOCHS, lr, seed, threads, extra)], flops))
    return rows


def main() -> None:
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    machine = {**describe(), "nproc": cores, "torch": torch.__version__,
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    peak = {t: matmul_peak_gflops(t) for t in sorted({1, cores})}
    flops = backbone_flops(defaults.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data")  # the demo dataset (training.defaults)
        single = compare(data, 1, flops, EPOCHS, ablations=True)
        default = compare(data, cores, flops, REF_EPOCHS_DEFAULT_THREADS, ablations=False)
        ddp_args = ["--augment", "--epochs", "5", "--workers", "0"]
        ddp = [ddp_run(data, 1, 1, ddp_args), ddp_run(data, 1, cores, ddp_args),
               ddp_run(data, 2, max(1, cores // 2), ddp_args)]
    result = {
        "machine": machine, "epochs": EPOCHS, "lr": defaults.lr, "target_valid_acc": TARGET_ACC,
        "matmul_peak_gflops": peak, "backbone_gflop_per_image": flops / 1e9,
        "loops_1_thread": single, "loops_default_threads": default,
        "throughput_ratio_1_thread": single[1]["images_per_s"] / single[0]["images_per_s"],
        "throughput_ratio_default_threads": default[1]["images_per_s"]
        / default[0]["images_per_s"],
        "accuracy_ok": single[1]["test_acc"] >= single[0]["test_acc"], "ddp": ddp,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "bench_seconds": time.perf_counter() - started}
    path = write_report("training", result, markdown(result))
    print(path.read_text())


def _table(rows: list[dict], peak: dict) -> list[str]:
    lines = ["| loop | threads | epochs | train s | images/s | time to valid acc ≥ 0.9 "
             "| test acc | backbone GFLOP/s (% of matmul peak) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        tta = f"{row['time_to_acc_s']:.2f} s" if row["time_to_acc_s"] is not None else "—"
        share = 100 * row["gflops"] / peak[row["threads"]]
        lines.append(f"| {row['loop']} | {row['threads']} | {row['epochs']} | "
                     f"{row['train_seconds']:.2f} | {row['images_per_s']:.0f} | {tta} | "
                     f"{row['test_acc']:.3f} | {row['gflops']:.1f} ({share:.0f}%) |")
    return lines


def markdown(r: dict) -> str:
    m, peak = r["machine"], r["matmul_peak_gflops"]
    peaks = ", ".join(f"{g:.0f} GFLOP/s @ {t} thread(s)" for t, g in peak.items())
    ok = r["throughput_ratio_1_thread"] >= 4 and r["accuracy_ok"]
    lines = [
        f"Machine: `nproc`={m['nproc']}, CPU {m['cpu_model']}, torch {m['torch']}. Load "
        f"average at start {m['loadavg_at_start']}, at end {r['loadavg_at_end']}: the machine "
        "was shared, so our runs are best of "
        f"{REPEATS} and multi-threaded timings are noisy (OpenMP barriers stall when a vCPU "
        "is busy elsewhere).",
        f"fp32 matmul peak (2048²): {peaks}. ResNet-18 backbone at {defaults.image_size} px: "
        f"{r['backbone_gflop_per_image']:.3f} GFLOP/image.",
        f"Data: the `training.defaults` demo ({defaults.classes} classes × "
        f"{defaults.per_class} images, {defaults.image_size} px; {r['loops_1_thread'][0]['epochs']}"
        f" epochs, lr {r['lr']}, no early stopping), random-init frozen ResNet-18 + seed head.",
        "images/s = training images × epochs / wall time of the loop (feature caching, "
        "training and per-epoch validation included; imports and model set-up excluded).",
        "", "**Equal threads (1 each):**", "", *_table(r["loops_1_thread"], peak), "",
        f"**Throughput ratio ours / reference at 1 thread: {r['throughput_ratio_1_thread']:.0f}×**"
        f" — goal ≥ 4× at equal or better test accuracy: {'met' if ok else 'NOT met'}.", "",
        f"**torch default threads ({m['nproc']}):** (reference for "
        f"{REF_EPOCHS_DEFAULT_THREADS} epochs only: throughput, not accuracy)", "",
        *_table(r["loops_default_threads"], peak), "",
        f"Ratio at {m['nproc']} threads: {r['throughput_ratio_default_threads']:.0f}×.", "",
        "DDP (`--augment`, 5 epochs, batch 32 per rank, gloo on 127.0.0.1, SageMaker-style env):",
        "", "| processes × threads | train s | images/s | test acc |", "|---|---|---|---|"]
    for d in r["ddp"]:
        lines.append(f"| {d['processes']} × {d['threads_each']} | {d['train_seconds']:.2f} | "
                     f"{d['images_per_s']:.0f} | {d['test_acc']:.3f} |")
    one, two = r["ddp"][1], r["ddp"][2]  # same cores in total: 1 x all vs 2 x half
    lines += ["", f"2 processes vs 1 on the same {m['nproc']} cores: "
              f"{one['train_seconds'] / two['train_seconds']:.2f}× the speed (the 1-process run "
              "pays the multi-thread stalls of this shared machine; the 2 ranks also duplicate "
              "set-up and add a gradient all-reduce per step). Two ranks double the effective "
              "batch, i.e. half the optimizer steps per epoch, so after equal epochs accuracy "
              "is lower (with cached features a 2-rank run with batch B per rank takes exactly "
              "the steps of 1 process with batch 2B; tested). DDP is for more hosts, not for "
              "more processes on one small host."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
