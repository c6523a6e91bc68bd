"""Shared defaults and the error type for bad input. Import-light: no torch here."""
from __future__ import annotations

from dataclasses import asdict, dataclass

ARCHS = ("resnet18", "resnet34", "resnet50")


class InputError(Exception):
    """Bad data or hyperparameters: reported as one `error: ...` line and exit code 2."""


@dataclass(frozen=True)
class Defaults:
    """The numbers the demo workflow, the CLI and `python -m training.train` share.

    Chosen so the default demo reaches test accuracy >= 0.9 in a few seconds on 2 CPU cores
    with a randomly initialised (no pretrained weights) frozen ResNet-18: the backbone runs once
    per image (feature caching) and the head trains on cached features.
    """

    # synthetic demo dataset (stepml make-dataset / stepml run)
    classes: int = 4
    per_class: int = 50
    dataset_size: int = 64
    dataset_seed: int = 0
    # training
    arch: str = "resnet18"
    image_size: int = 64
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    patience: int = 5
    seed: int = 0
    augment: bool = False
    cache_features: bool = True
    train_backbone: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


defaults = Defaults()


@dataclass
class TrainConfig:
    """Everything one training run needs, after arguments and SageMaker env are resolved."""

    split_dirs: dict  # {"train": Path, "valid": Path, "test": Path} (local)
    model_dir: str  # local path where artifacts are written (uploaded afterwards if s3)
    checkpoint_dir: str
    output_data_dir: str | None = None
    arch: str = defaults.arch
    epochs: int = defaults.epochs
    lr: float = defaults.lr
    batch_size: int = defaults.batch_size
    image_size: int = defaults.image_size
    patience: int = defaults.patience
    seed: int = defaults.seed
    train_backbone: bool = defaults.train_backbone
    augment: bool = defaults.augment
    cache_features: bool = defaults.cache_features
    bf16: bool = False
    workers: int = -1  # -1: auto
    threads: int = 0  # 0: auto
    weights: str | None = None

    def hyperparameters(self) -> dict:
        keys = ("arch", "epochs", "lr", "batch_size", "image_size", "patience", "seed",
                "train_backbone", "augment", "cache_features", "bf16")
        return {k: getattr(self, k) for k in keys}
