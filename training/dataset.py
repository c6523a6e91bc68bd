"""Image data: a deterministic synthetic dataset generator and fault-tolerant ImageFolder loading.

Layout (the real dogImages layout works unchanged)::

    root/train/<class>/*.jpg   root/valid/<class>/*.jpg   root/test/<class>/*.jpg
"""
from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.config import InputError, defaults

SPLITS = ("train", "valid", "test")
# dogImages calls it "valid"; accept the other common spellings when "valid" is absent.
SPLIT_ALIASES = {"valid": ("valid", "val", "validation")}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SHAPES = ("circle", "square", "triangle", "stripes", "ring", "cross", "checker", "dots")
COLOUR_NAMES = ("red", "orange", "yellow", "lime", "green", "teal",
                "cyan", "azure", "blue", "violet", "magenta", "pink")


# --------------------------------------------------------------------------- synthetic data
def split_counts(per_class: int, splits: Sequence[float | int]) -> dict[str, int]:
    """Images per class in each split: fractions of `per_class`, or exact integer counts."""
    if len(splits) != 3:
        raise ValueError("splits needs three entries (train, valid, test)")
    if all(isinstance(s, int) for s in splits):
        counts = [int(s) for s in splits]
    else:
        total = sum(splits)
        valid = max(1, round(per_class * splits[1] / total))
        test = max(1, round(per_class * splits[2] / total))
        counts = [per_class - valid - test, valid, test]
    if min(counts) < 1:
        raise ValueError(f"every split needs at least one image per class, got {counts}")
    return dict(zip(SPLITS, counts, strict=True))


def class_names(classes: int) -> list[str]:
    """dogImages-style sortable names, e.g. '001.red_circle'."""
    names = []
    for k in range(classes):
        colour = COLOUR_NAMES[round(_class_hue(k, classes) * len(COLOUR_NAMES)) % 12]
        names.append(f"{k + 1:03d}.{colour}_{SHAPES[k % len(SHAPES)]}")
    return names


def make_dataset(out_dir: str | Path, classes: int = defaults.classes,
                 per_class: int = defaults.per_class, size: int = defaults.dataset_size,
                 seed: int = defaults.dataset_seed,
                 splits: Sequence[float | int] = (0.7, 0.15, 0.15)) -> Path:
    """Write a deterministic synthetic ImageFolder dataset of JPEGs and return its root.

    Each class has its own background hue, a contrasting foreground hue and its own shape or
    texture; position, scale, colour and pixel noise are jittered per image. Colour alone is a
    global statistic that even a randomly initialised, frozen CNN passes through to its pooled
    features, so a trained head separates the classes without pretrained weights.
    With integer `splits`, they are the exact per-class counts and `per_class` is ignored.
    """
    if classes < 2 or size < 8:
        raise ValueError("need classes >= 2 and size >= 8")
    counts = split_counts(per_class, splits)
    root = Path(out_dir)
    names = class_names(classes)
    for k, name in enumerate(names):
        index = 0
        for split, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                # One generator per image: adding images never changes the existing ones.
                rng = np.random.default_rng([seed, k, index])
                _draw(k, classes, size, rng).save(folder / f"{name}_{index:04d}.jpg", quality=90)
                index += 1
    return root


def _class_hue(k: int, classes: int) -> float:
    return (k / classes) % 1.0


def _rgb(hue: float, rng: np.random.Generator) -> tuple[int, int, int]:
    sat, val = rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    r, g, b = colorsys.hsv_to_rgb((hue + rng.normal(0, 0.015)) % 1.0, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def _draw(k: int, classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    hue = _class_hue(k, classes)
    img = Image.new("RGB", (size, size), _rgb(hue, rng))
    fg = _rgb((hue + 0.5) % 1.0, rng)
    extent = rng.uniform(0.45, 0.8) * size
    cx, cy = rng.uniform(extent / 2, size - extent / 2, 2)
    box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
    _shape(ImageDraw.Draw(img), SHAPES[k % len(SHAPES)], box, fg, size)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, 10, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...],
           fg: tuple[int, int, int], size: int) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    line = max(1, round(w / 6))
    if shape == "circle":
        draw.ellipse(box, fill=fg)
    elif shape == "square":
        draw.rectangle(box, fill=fg)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fg)
    elif shape == "ring":
        draw.ellipse(box, outline=fg, width=line)
    elif shape == "cross":
        draw.rectangle((x0, y0 + w / 2 - line, x1, y0 + w / 2 + line), fill=fg)
        draw.rectangle((x0 + w / 2 - line, y0, x0 + w / 2 + line, y1), fill=fg)
    elif shape == "stripes":  # full-image texture: scale-free, survives random crops
        step = max(2, size // 8)
        for x in range(0, size, 2 * step):
            draw.rectangle((x, 0, x + step - 1, size), fill=fg)
    elif shape == "checker":
        step = max(2, size // 8)
        for y in range(0, size, step):
            for x in range((y // step) % 2 * step, size, 2 * step):
                draw.rectangle((x, y, x + step - 1, y + step - 1), fill=fg)
    else:  # dots
        step = max(3, size // 6)
        r = max(1, step // 3)
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fg)


# --------------------------------------------------------------------------- layout checks
def resolve_split_dir(root: Path, split: str) -> Path | None:
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    return None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def scan_split(split: str, root: Path) -> list[str]:
    """Class folder names of one split; InputError on a layout a classifier cannot train on."""
    if not root.is_dir():
        raise InputError(f"missing {split} data: {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"{split} data needs at least 2 class folders, found {len(classes)} "
                         f"in {root}")
    for name in classes:
        if not any(_is_image(p) for p in (root / name).iterdir()):
            raise InputError(f"empty class folder: {root / name} has no images")
    return classes


def check_layout(split_dirs: dict[str, Path]) -> list[str]:
    """Validate every split and return the (shared) sorted class list."""
    found = {split: scan_split(split, path) for split, path in split_dirs.items()}
    reference = found["train"]
    for split, classes in found.items():
        if classes != reference:
            extra = sorted(set(classes) - set(reference))
            missing = sorted(set(reference) - set(classes))
            raise InputError(f"class folders differ between train and {split}: "
                             f"missing in {split} {missing[:5]}, extra in {split} {extra[:5]}")
    return reference


# --------------------------------------------------------------------------- loading
def train_transform(size: int):
    """The seed's training transforms: random resized crop + horizontal flip."""
    from torchvision import transforms as T
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_transform(size: int):
    """The seed's evaluation transforms: resize (+ centre crop so non-square photos batch)."""
    from torchvision import transforms as T
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def image_folder(root: Path, transform):
    """An ImageFolder that yields (tensor | None, target, index): None for unreadable files."""
    from torchvision import datasets

    class SafeImageFolder(datasets.ImageFolder):
        def find_classes(self, directory):  # same rule as scan_split: hidden folders ignored
            classes = sorted(e.name for e in os.scandir(directory)
                             if e.is_dir() and not e.name.startswith("."))
            return classes, {name: i for i, name in enumerate(classes)}

        def __getitem__(self, index: int):
            path, target = self.samples[index]
            try:
                with Image.open(path) as img:
                    rgb = img.convert("RGB")  # forces a full decode: truncation shows up here
            except Exception:  # PIL decoders raise many types (OSError, SyntaxError, ...)
                return None, target, index
            return self.transform(rgb), target, index

    return SafeImageFolder(str(root), transform=transform, allow_empty=True)


def collate_skipping(batch: list):
    """Stack readable samples; return the dataset indices of unreadable ones alongside."""
    import torch
    good = [item for item in batch if item[0] is not None]
    skipped = [item[2] for item in batch if item[0] is None]
    images = torch.stack([item[0] for item in good]) if good else torch.empty(0)
    targets = torch.tensor([item[1] for item in good], dtype=torch.long)
    return images, targets, skipped


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Strided shard of range(n); shards differ in length by at most one."""
    return list(range(rank, n, world))


def padded_shard_len(n: int, world: int) -> int:
    return math.ceil(n / world)
