"""Synthetic dataset generation, layout checks and fault-tolerant image loading."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from training.config import InputError
from training.dataset import (
    check_layout,
    class_names,
    collate_skipping,
    eval_transform,
    image_folder,
    make_dataset,
    split_counts,
)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_counts_and_names(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", classes=3, per_class=10, size=24, seed=1)
    names = class_names(3)
    assert names == sorted(names) and len(set(names)) == 3  # sort order == class index
    for split, count in {"train": 6, "valid": 2, "test": 2}.items():
        assert sorted(p.name for p in (root / split).iterdir()) == names
        for name in names:
            files = list((root / split / name).glob("*.jpg"))
            assert len(files) == count
    assert check_layout({s: root / s for s in ("train", "valid", "test")}) == names


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", classes=2, per_class=6, size=16, seed=3)
    b = make_dataset(tmp_path / "b", classes=2, per_class=6, size=16, seed=3)
    c = make_dataset(tmp_path / "c", classes=2, per_class=6, size=16, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_split_counts() -> None:
    assert split_counts(30, (0.7, 0.15, 0.15)) == {"train": 22, "valid": 4, "test": 4}
    assert split_counts(0, (5, 2, 1)) == {"train": 5, "valid": 2, "test": 1}
    with pytest.raises(ValueError):
        split_counts(2, (0.7, 0.15, 0.15))
    with pytest.raises(ValueError):
        split_counts(10, (1.0, 0.0))


def test_classes_differ_in_colour(tiny_data: Path) -> None:
    """The generator's promise: per-class mean colours are far apart (learnable classes)."""
    ds = image_folder(tiny_data / "train", eval_transform(32))
    means: dict[int, list[torch.Tensor]] = {}
    for i in range(len(ds)):
        x, y, _ = ds[i]
        means.setdefault(y, []).append(x.mean(dim=(1, 2)))
    centres = torch.stack([torch.stack(v).mean(0) for v in means.values()])
    assert torch.cdist(centres, centres).fill_diagonal_(9).min() > 0.5


@pytest.mark.parametrize("mutate, message", [
    (lambda r: __import__("shutil").rmtree(r / "valid"), "missing valid"),
    (lambda r: [p.unlink() for p in (r / "train" / class_names(3)[1]).iterdir()],
     "empty class folder"),
    (lambda r: (r / "test" / class_names(3)[2]).rename(r / "test" / "zzz.other"),
     "class folders differ between train and test"),
])
def test_layout_errors(data_copy: Path, mutate, message: str) -> None:
    mutate(data_copy)
    with pytest.raises(InputError, match=message):
        check_layout({s: data_copy / s for s in ("train", "valid", "test")})


def test_single_class_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "train" / "only").mkdir(parents=True)
    (tmp_path / "train" / "only" / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="at least 2 class folders, found 1"):
        check_layout({"train": tmp_path / "train"})


def test_unreadable_images_are_skipped_and_reported(data_copy: Path) -> None:
    folder = data_copy / "train" / class_names(3)[0]
    good = sorted(folder.glob("*.jpg"))[0]
    (folder / "garbage.jpg").write_bytes(b"definitely not a jpeg")
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    ds = image_folder(data_copy / "train", eval_transform(32))
    items = [ds[i] for i in range(len(ds))]
    bad = {Path(ds.samples[i][0]).name for x, _, i in items if x is None}
    assert bad == {"garbage.jpg", "truncated.jpg"}
    images, targets, skipped = collate_skipping(items[:10])
    assert images.shape[0] == targets.shape[0] == 10 - len(skipped)
    assert {Path(ds.samples[i][0]).name for i in skipped} <= bad
