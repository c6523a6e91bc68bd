"""The training loop: feature caching, head/backbone epochs, evaluation, early stopping, resume.

Frozen backbone (default): the backbone runs under inference_mode in eval mode (its BatchNorm
statistics stay frozen too) and only the head trains. With feature caching, each image of a
split that is not augmented goes through the backbone exactly once; epochs then cost only the
head's few matmuls. Under DDP every rank extracts a shard and the shards are all-gathered, so
each rank holds the full cached split and computes identical validation numbers (early
stopping decisions agree without extra messages).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Subset

from training import distributed as D
from training.config import InputError, TrainConfig
from training.dataset import collate_skipping, padded_shard_len, shard_indices
from training.model import backbone_of

EVAL_BATCH = 64
# Epochs on cached features take milliseconds: writing a checkpoint after each would dominate.
# Save after an epoch once this long has passed since the last save, and after the last epoch.
CHECKPOINT_EVERY_S = 10.0


@dataclass
class Context:
    cfg: TrainConfig
    info: D.DistInfo
    device: torch.device
    workers: int
    log: Callable[..., None]  # log(line, err=False): rank 0 prints, other ranks stay quiet
    feature_dim: int = 0
    skipped: set = field(default_factory=set)  # paths of unreadable images seen by this rank


@dataclass
class Best:
    valid_loss: float = math.inf
    valid_acc: float = 0.0
    epoch: int = 0
    state: dict | None = None


@contextmanager
def single_thread():
    """Head-only steps on cached features are tiny matmuls: with several threads the
    synchronisation costs more than the math (and stalls badly on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def autocast(ctx: Context):
    return torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.cfg.bf16)


def to_device(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    if x.dim() == 4:  # images: NHWC is the faster convolution layout on CPU (oneDNN)
        return x.to(ctx.device, memory_format=torch.channels_last, non_blocking=True)
    return x.to(ctx.device, non_blocking=True)


def loader(dataset, ctx: Context, batch: int, sampler=None, generator=None,
           shuffle: bool = False, drop_last: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, sampler=sampler, shuffle=shuffle,
                      generator=generator, num_workers=ctx.workers, drop_last=drop_last,
                      collate_fn=collate_skipping, pin_memory=ctx.device.type == "cuda")


def _note_skipped(dataset, bad: list[int], ctx: Context) -> None:
    ctx.skipped.update(dataset.samples[i][0] for i in bad)


# --------------------------------------------------------------------------- features
def extract(backbone: nn.Module, dataset, indices: list[int], ctx: Context):
    """(features, labels, dataset indices) of dataset[indices]; unreadable images are
    dropped and recorded."""
    feats, labels, kept = [], [], []
    with torch.inference_mode(), autocast(ctx):
        batches = loader(Subset(dataset, indices), ctx, EVAL_BATCH)  # in order: no shuffle
        for k, (x, y, bad) in enumerate(batches):
            _note_skipped(dataset, bad, ctx)
            kept += [i for i in indices[k * EVAL_BATCH:(k + 1) * EVAL_BATCH] if i not in bad]
            if len(y):
                feats.append(backbone(to_device(x, ctx)).float())
                labels.append(y.to(ctx.device))
    index = torch.tensor(kept, dtype=torch.long, device=ctx.device)
    if not feats:
        return (torch.empty(0, ctx.feature_dim, device=ctx.device),
                torch.empty(0, dtype=torch.long, device=ctx.device), index)
    # clone() outside inference_mode: cached features must be usable by autograd later
    return torch.cat(feats).clone(), torch.cat(labels).clone(), index


def cache_split(backbone: nn.Module, dataset, split: str, ctx: Context):
    """Features of a whole split on every rank: each rank extracts a shard, then all-gather.
    Rows are put back in dataset order, so a DDP run with batch B per rank takes exactly
    the steps a single process takes with batch B x world size."""
    n, info = len(dataset), ctx.info
    x, y, index = extract(backbone, dataset, shard_indices(n, info.rank, info.world_size), ctx)
    pad = padded_shard_len(n, info.world_size)
    x, y, index = (D.all_gather_rows(t, pad, info) for t in (x, y, index))
    if len(y) == 0:
        raise InputError(f"no readable images in the {split} split")
    order = torch.argsort(index)
    return x[order], y[order]


# --------------------------------------------------------------------------- epochs
def _step(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, opt, ctx: Context):
    """One optimiser step; returns (loss sum, count). Empty batches still step so DDP ranks
    stay in lock-step: a zero-weighted dummy forward keeps the gradient all-reduce matched."""
    opt.zero_grad(set_to_none=True)
    with autocast(ctx):
        if len(targets) == 0:
            out = module(torch.zeros((2, *inputs.shape[1:]), device=ctx.device))
            loss, count = out.float().sum() * 0.0, 0
        else:
            out = module(inputs)
            loss, count = nn.functional.cross_entropy(out.float(), targets), len(targets)
    loss.backward()
    opt.step()
    return loss.item() * count, count


def epoch_cached(head: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, epoch: int,
                 ctx: Context) -> float:
    """One epoch of the head on cached features. The shuffle depends only on (seed, epoch),
    so a resumed run sees exactly the batches an uninterrupted one would."""
    info, batch = ctx.info, ctx.cfg.batch_size
    gen = torch.Generator().manual_seed(ctx.cfg.seed * 100_003 + epoch)
    order = torch.randperm(len(x), generator=gen)
    per_rank = math.ceil(len(x) / info.world_size)
    order = torch.cat([order, order[: per_rank * info.world_size - len(x)]])  # equal shards
    mine = order[info.rank :: info.world_size].to(x.device)
    total, count = 0.0, 0
    for i in range(0, len(mine), batch):
        idx = mine[i : i + batch]
        s, c = _step(head, x[idx], y[idx], opt, ctx)
        total, count = total + s, count + c
    total, count = D.all_reduce_sum([total, count], info, ctx.device)
    return total / max(count, 1)


def epoch_images(module: nn.Module, backbone: nn.Module | None, train_loader: DataLoader,
                 opt, ctx: Context) -> float:
    """One epoch from images: through the frozen backbone without autograd, then the head
    (backbone is not None), or end to end when fine-tuning (backbone is None)."""
    dataset = train_loader.dataset
    total, count = 0.0, 0
    for x, y, bad in train_loader:
        _note_skipped(dataset, bad, ctx)
        inputs, targets = _batch_inputs(x, y, backbone, ctx)
        s, c = _step(module, inputs, targets, opt, ctx)
        total, count = total + s, count + c
    total, count = D.all_reduce_sum([total, count], ctx.info, ctx.device)
    if count == 0:
        raise InputError("no readable images in the train split")
    return total / count


def _batch_inputs(x: torch.Tensor, y: torch.Tensor, backbone: nn.Module | None,
                  ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs for one batch: images, or frozen-backbone features (no autograd graph)."""
    y = y.to(ctx.device)
    if not len(y):  # every image unreadable: an empty input of the right width
        size = ctx.cfg.image_size
        shape = (0, ctx.feature_dim) if backbone is not None else (0, 3, size, size)
        return torch.zeros(shape, device=ctx.device), y
    x = to_device(x, ctx)
    if backbone is None:
        return x, y
    with torch.inference_mode(), autocast(ctx):
        feats = backbone(x).float()
    return feats.clone(), y  # clone: a normal tensor the head's autograd may save


# --------------------------------------------------------------------------- evaluation
def eval_cached(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.inference_mode():
        out = head(x)
        loss = nn.functional.cross_entropy(out, y).item()
        acc = (out.argmax(1) == y).float().mean().item()
    return loss, acc


def eval_images(net: nn.Module, dataset, split: str, ctx: Context) -> tuple[float, float]:
    """Loss/accuracy over a split of images; each rank takes a shard, sums are all-reduced."""
    info = ctx.info
    sub = Subset(dataset, shard_indices(len(dataset), info.rank, info.world_size))
    loss_sum, correct, count = 0.0, 0.0, 0
    net.eval()
    with torch.inference_mode(), autocast(ctx):
        for x, y, bad in loader(sub, ctx, EVAL_BATCH):
            _note_skipped(dataset, bad, ctx)
            if not len(y):
                continue
            out, y = net(to_device(x, ctx)).float(), y.to(ctx.device)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            count += len(y)
    loss_sum, correct, count = D.all_reduce_sum([loss_sum, correct, count], info, ctx.device)
    if count == 0:
        raise InputError(f"no readable images in the {split} split")
    return loss_sum / count, correct / count


# --------------------------------------------------------------------------- checkpoints
def fingerprint(cfg: TrainConfig, classes: list[str]) -> dict:
    """What must match for a checkpoint to be resumed: everything but epochs and patience,
    so an interrupted run resumes, and a finished one can be extended with more epochs."""
    hyper = {k: v for k, v in cfg.hyperparameters().items() if k not in ("epochs", "patience")}
    return {**hyper, "classes": classes, "weights": cfg.weights}


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic write: an interruption (spot reclaim) never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected: dict, ctx: Context) -> dict | None:
    """Rank 0 reads the checkpoint and broadcasts it, so every rank resumes identically."""
    ckpt = None
    if ctx.info.is_main and path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file must not block training from scratch
            ctx.log(f"warning: ignoring unreadable checkpoint {path}: {exc}", err=True)
        if ckpt is not None and ckpt.get("fingerprint") != expected:
            ctx.log(f"warning: checkpoint {path} is from a different configuration; "
                    "starting from scratch", err=True)
            ckpt = None
    return D.broadcast_object(ckpt, ctx.info)


def trainable_state(net: nn.Module, cfg: TrainConfig) -> dict:
    module = net if cfg.train_backbone else net.fc
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_trainable(net: nn.Module, state: dict, cfg: TrainConfig) -> None:
    (net if cfg.train_backbone else net.fc).load_state_dict(state)


# --------------------------------------------------------------------------- the loop
@dataclass
class Splits:
    """Datasets per split, plus cached features when the backbone is frozen."""

    train: object
    valid: object
    test: object
    cached: dict = field(default_factory=dict)  # split -> (features, labels)


@dataclass
class LoopState:
    """Everything a checkpoint carries besides weights and optimizer state."""

    history: list = field(default_factory=list)
    best: Best = field(default_factory=Best)
    bad_epochs: int = 0
    epoch: int = 0  # last finished epoch
    stopped: bool = False  # early stopping fired


def fit(net: nn.Module, splits: Splits, classes: list[str], ctx: Context) -> dict:
    """Train with early stopping and checkpoints; return the metrics dict."""
    cfg = ctx.cfg
    started = time.perf_counter()
    ctx.feature_dim = net.fc[0].in_features
    backbone, frozen = backbone_of(net), not cfg.train_backbone
    if frozen:
        net.eval()  # BatchNorm statistics of a frozen backbone must not drift
    feature_seconds = _cache_features(backbone, splits, ctx) if frozen else 0.0
    module = net.fc if frozen else net
    ddp = DDP(module) if ctx.info.enabled else module
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=cfg.lr)
    ckpt_path, expected = Path(cfg.checkpoint_dir) / "last.pt", fingerprint(cfg, classes)
    state = _resume(net, opt, ckpt_path, expected, ctx)
    resumed_from = state.epoch or None
    train_loader = None if "train" in splits.cached else _train_loader(splits.train, ctx)
    saved_at = -math.inf
    while state.epoch < cfg.epochs and not state.stopped:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        net.train(not frozen)
        if "train" in splits.cached:
            with single_thread():
                train_loss = epoch_cached(ddp, *splits.cached["train"], opt, epoch, ctx)
        else:
            _set_epoch(train_loader, cfg.seed, epoch)
            train_loss = epoch_images(ddp, backbone if frozen else None, train_loader, opt, ctx)
        valid_loss, valid_acc = _evaluate(net, splits, "valid", ctx)
        _record(state, net, epoch, train_loss, valid_loss, valid_acc, t0, started, ctx)
        if state.epoch == cfg.epochs or state.stopped or \
                time.perf_counter() - saved_at >= CHECKPOINT_EVERY_S:
            saved_at = time.perf_counter()
            _checkpoint(ckpt_path, expected, net, opt, state, ctx)

    if state.best.state is not None:
        load_trainable(net, state.best.state, cfg)
    test_loss, test_acc = _evaluate(net, splits, "test", ctx)
    best = state.best
    return {"history": state.history, "best_epoch": best.epoch,
            "best_valid_loss": best.valid_loss, "best_valid_acc": best.valid_acc,
            "test_loss": test_loss, "test_acc": test_acc, "early_stopped": state.stopped,
            "resumed_from_epoch": resumed_from, "feature_seconds": feature_seconds,
            "train_seconds": time.perf_counter() - started, "num_train": len(splits.train),
            "num_valid": len(splits.valid), "num_test": len(splits.test)}


def _resume(net: nn.Module, opt, path: Path, expected: dict, ctx: Context) -> LoopState:
    ckpt = load_checkpoint(path, expected, ctx)
    if not ckpt:
        return LoopState()
    load_trainable(net, ckpt["state"], ctx.cfg)
    opt.load_state_dict(ckpt["optimizer"])
    ctx.log(f"resumed_from_epoch={ckpt['epoch']}")
    return LoopState(ckpt["history"], Best(**ckpt["best"]), ckpt["bad_epochs"], ckpt["epoch"],
                     ckpt["stopped"])


def _record(state: LoopState, net: nn.Module, epoch: int, train_loss: float,
            valid_loss: float, valid_acc: float, t0: float, started: float,
            ctx: Context) -> None:
    """Book-keep one finished epoch: best weights, early stopping, history, the log line."""
    if valid_loss < state.best.valid_loss:
        state.best = Best(valid_loss, valid_acc, epoch, trainable_state(net, ctx.cfg))
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1
    state.epoch = epoch
    state.stopped = 0 < ctx.cfg.patience <= state.bad_epochs
    row = {"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss,
           "valid_acc": valid_acc, "seconds": time.perf_counter() - t0,
           "elapsed": time.perf_counter() - started}
    state.history.append(row)
    ctx.log(f"epoch={epoch} train_loss={train_loss:.4f} valid_loss={valid_loss:.4f} "
            f"valid_acc={valid_acc:.4f} seconds={row['seconds']:.3f}")
    if state.stopped:
        ctx.log(f"early_stop_epoch={epoch} best_epoch={state.best.epoch}")


def _checkpoint(path: Path, expected: dict, net: nn.Module, opt, state: LoopState,
                ctx: Context) -> None:
    if ctx.info.is_main:
        save_checkpoint(path, {
            "fingerprint": expected, "epoch": state.epoch,
            "state": trainable_state(net, ctx.cfg), "optimizer": opt.state_dict(),
            "history": state.history, "bad_epochs": state.bad_epochs,
            "stopped": state.stopped, "best": vars(state.best)})


def _cache_features(backbone: nn.Module, splits: Splits, ctx: Context) -> float:
    """Cache the splits whose backbone features never change; return the seconds spent."""
    if not ctx.cfg.cache_features:
        return 0.0
    t0 = time.perf_counter()
    names = ["valid", "test"] + ([] if ctx.cfg.augment else ["train"])
    for name in names:
        splits.cached[name] = cache_split(backbone, getattr(splits, name), name, ctx)
    return time.perf_counter() - t0


def _train_loader(dataset, ctx: Context) -> DataLoader:
    info = ctx.info
    # BatchNorm in train mode cannot take a batch of one; only fine-tuning trains BatchNorm.
    drop_last = ctx.cfg.train_backbone and len(dataset) > ctx.cfg.batch_size * info.world_size
    if info.enabled:
        sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True,
                                     seed=ctx.cfg.seed)
        return loader(dataset, ctx, ctx.cfg.batch_size, sampler=sampler, drop_last=drop_last,
                      generator=torch.Generator())
    return loader(dataset, ctx, ctx.cfg.batch_size, shuffle=True, drop_last=drop_last,
                  generator=torch.Generator())


def _set_epoch(train_loader: DataLoader, seed: int, epoch: int) -> None:
    """Shuffle order and augmentation seeds depend only on (seed, epoch): resumable."""
    train_loader.generator.manual_seed(seed * 100_003 + epoch)
    if isinstance(train_loader.sampler, DistributedSampler):
        train_loader.sampler.set_epoch(epoch)


def _evaluate(net: nn.Module, splits: Splits, split: str, ctx: Context) -> tuple[float, float]:
    if split in splits.cached:
        with single_thread():
            return eval_cached(net.fc, *splits.cached[split])
    return eval_images(net, getattr(splits, split), split, ctx)

