"""Rebuilding the trained classifier from a model dir: architecture, weights, classes, transform.

Stands alone (no import from `training/`): the artifact's contract is `model.pth` (a state dict of
a torchvision ResNet whose `fc` is Linear(in, 128) → ReLU → Linear(128, classes)),
`classes.json` (list, or {"0": name} dict) and `hyperparameters.json` (`arch`, `image_size`).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models, transforms

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50,
}
DEFAULT_ARCH = "resnet18"
DEFAULT_IMAGE_SIZE = 64
HIDDEN_UNITS = 128
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Wrappers that prefix state-dict keys: DistributedDataParallel and torch.compile.
_KEY_PREFIXES = ("module.", "_orig_mod.")


class ModelLoadError(Exception):
    """The model dir is missing a file or its files do not fit together."""


@dataclass
class LoadedModel:
    net: nn.Module
    classes: list[str]
    arch: str
    image_size: int
    version: str  # first 12 hex digits of model.pth's sha256: which weights answered
    transform: Callable[[Any], torch.Tensor]
    # One forward at a time: each already uses every core (intra-op threads); concurrent ones
    # would oversubscribe the CPU and slow each other down.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def info(self) -> dict[str, Any]:
        return {"arch": self.arch, "image_size": self.image_size, "version": self.version,
                "num_classes": len(self.classes)}


def build_network(arch: str, num_classes: int) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ModelLoadError(f"unknown arch {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    net = ARCHITECTURES[arch](weights=None)
    net.fc = nn.Sequential(nn.Linear(net.fc.in_features, HIDDEN_UNITS), nn.ReLU(),
                           nn.Linear(HIDDEN_UNITS, num_classes))
    return net


def eval_transform(image_size: int) -> Callable[[Any], torch.Tensor]:
    """The evaluation preprocessing training uses: shorter side → size, centre crop, normalise."""
    return transforms.Compose([
        transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def load_model(model_dir: str | os.PathLike[str]) -> LoadedModel:
    root = Path(model_dir)
    weights_path = root / "model.pth"
    if not weights_path.is_file():
        raise ModelLoadError(f"{weights_path} not found")
    hyper = read_hyperparameters(root)
    arch = str(hyper.get("arch") or DEFAULT_ARCH)
    image_size = _positive_int(hyper.get("image_size", DEFAULT_IMAGE_SIZE), "image_size")
    state = load_state_dict(weights_path)
    num_classes = _head_size(state)
    classes = read_classes(root, num_classes)
    net = _materialise(arch, num_classes, state)
    return LoadedModel(net=net, classes=classes, arch=arch, image_size=image_size,
                       version=_digest(weights_path), transform=eval_transform(image_size))


def read_hyperparameters(root: Path) -> dict[str, Any]:
    path = root / "hyperparameters.json"
    if not path.is_file():
        return {}
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return {key: _decode_value(value) for key, value in raw.items()}


def read_classes(root: Path, num_classes: int) -> list[str]:
    path = root / "classes.json"
    if not path.is_file():
        raise ModelLoadError(f"{path} not found")
    raw = _read_json(path)
    if isinstance(raw, dict):
        try:
            raw = [raw[str(i)] for i in range(len(raw))]
        except KeyError:
            raise ModelLoadError(f"{path}: dict keys must be '0'..'{len(raw) - 1}'") from None
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise ModelLoadError(f"{path} must be a list of class names or a {{'0': name}} dict")
    if len(raw) != num_classes:
        raise ModelLoadError(f"{path} names {len(raw)} classes but the model has {num_classes}")
    return raw


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no pickle code execution
    except Exception as err:  # torch raises many types for a bad file
        raise ModelLoadError(f"cannot read {path}: {err}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} must hold a state dict")
    for prefix in _KEY_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _materialise(arch: str, num_classes: int, state: dict[str, torch.Tensor]) -> nn.Module:
    # Built on the meta device: no time spent on a random init the weights overwrite anyway.
    with torch.device("meta"):
        net = build_network(arch, num_classes)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ModelLoadError(f"model.pth does not match {arch}: {err}") from None
    # oneDNN's CPU convolutions run ~20% faster on NHWC weights; inputs may stay NCHW.
    return net.to(memory_format=torch.channels_last).eval()


def _head_size(state: dict[str, torch.Tensor]) -> int:
    weight = state.get("fc.2.weight")
    if weight is None or weight.dim() != 2:
        raise ModelLoadError("model.pth has no fc.2.weight: expected the Linear-ReLU-Linear head")
    return int(weight.shape[0])


def _decode_value(value: Any) -> Any:
    """SageMaker stores hyperparameters as JSON-encoded strings ('"resnet18"', '64')."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ModelLoadError(f"hyperparameter {name} must be an integer, got {value!r}") from None
    if number < 1:
        raise ModelLoadError(f"hyperparameter {name} must be positive, got {number}")
    return number


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from None


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:12]


def configure_threads() -> int:
    """Intra-op threads = usable cores (or STEPML_TORCH_THREADS / OMP_NUM_THREADS); no inter-op."""
    raw = os.environ.get("STEPML_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS") or ""
    threads = int(raw) if raw.strip().isdigit() and int(raw) > 0 else _usable_cores()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)  # one model, one forward at a time: nothing to overlap
    except RuntimeError:
        pass  # already fixed once inter-op work ran in this process
    return threads


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
