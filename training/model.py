"""ResNet classifier with the seed's head; pretrained weights only from local files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from training.config import ARCHS, InputError

HIDDEN = 128


def build_model(arch: str, num_classes: int) -> nn.Module:
    """torchvision ResNet (random init, never downloads) with head Linear→ReLU→Linear.

    The state dict keeps torchvision's key names; the head is `fc.0.*` and `fc.2.*`.
    """
    if arch not in ARCHS:
        raise InputError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    net = getattr(models, arch)(weights=None)
    net.fc = nn.Sequential(nn.Linear(net.fc.in_features, HIDDEN), nn.ReLU(inplace=True),
                           nn.Linear(HIDDEN, num_classes))
    return net


def backbone_of(net: nn.Module) -> nn.Module:
    """Everything before the head, sharing parameters with `net`; outputs pooled features."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                         net.layer3, net.layer4, net.avgpool, nn.Flatten(1))


def set_backbone_trainable(net: nn.Module, trainable: bool) -> None:
    for name, param in net.named_parameters():
        param.requires_grad = trainable or name.startswith("fc.")


def cached_weights_path(arch: str) -> Path:
    """Where torchvision would cache the ImageNet weights (honours TORCH_HOME)."""
    url = models.get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


IMAGENET, NO_WEIGHTS = "imagenet", "none"


def imagenet_weights(arch: str) -> Path:
    """torchvision's ImageNet weights for ``arch``: the torch cache's copy, else downloaded into
    it. A job without network access (SageMaker's network isolation; every local cloud job)
    cannot download: it fails here at once with what to do instead."""
    path = cached_weights_path(arch)
    if path.is_file():
        return path
    url = models.get_model_weights(arch).DEFAULT.url
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:  # URLError, proxy refusals, DNS failures: all mean "no network"
        raise InputError(
            f"weights=imagenet: {arch}'s ImageNet weights are not in the torch cache ({path}) and "
            f"could not be downloaded ({type(exc).__name__}: {exc}); a job without network "
            "access needs training.weights as an s3:// URI of the weights file, or none") from None
    return path


def load_backbone_weights(net: nn.Module, arch: str, weights: str | None) -> str | None:
    """Load backbone weights and return the file used. ``weights``: ``imagenet`` (torchvision's,
    see imagenet_weights), ``none`` (randomly initialised), a file, or unset (the torch cache's
    ImageNet file if there is one, else random with one warning line).

    Only backbone keys are taken (the head is new).
    """
    if weights == NO_WEIGHTS:
        return None
    if weights == IMAGENET:
        weights = str(imagenet_weights(arch))
    path = Path(weights) if weights else cached_weights_path(arch)
    if weights and not path.is_file():
        raise InputError(f"weights file not found: {weights}")
    if not path.is_file():
        print(f"warning: no pretrained {arch} weights (no --weights, nothing at {path}); "
              "the backbone is randomly initialised", file=sys.stderr, flush=True)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors vary by file damage
        raise InputError(f"cannot read weights file {path}: {exc}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(backbone, strict=False)
    except RuntimeError as exc:  # shape mismatch: weights of another arch
        raise InputError(f"weights {path} do not fit {arch}: {str(exc).splitlines()[0]}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise InputError(f"weights {path} do not fit {arch}: {len(missing)} missing and "
                         f"{len(unexpected)} unexpected keys")
    return str(path)


def load_classes(path: str | Path) -> list[str]:
    """Read classes.json: {"0": name, ...} (what training writes) or a plain list."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        return [str(c) for c in data]
    return [str(data[str(i)]) for i in range(len(data))]


def load_trained(model_dir: str | Path) -> tuple[nn.Module, list[str], dict]:
    """Rebuild a trained model from a model dir (model.pth, classes.json, hyperparameters.json)."""
    root = Path(model_dir)
    hyper = json.loads((root / "hyperparameters.json").read_text())
    classes = load_classes(root / "classes.json")
    net = build_model(hyper["arch"], len(classes))
    net.load_state_dict(torch.load(root / "model.pth", map_location="cpu", weights_only=True))
    return net.eval(), classes, hyper
