"""Tiny data sets written in the standard formats, for tests: ImageFolder and CIFAR-10 batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(
    root: Path, *, classes: tuple[str, ...] = ("a", "b"), per_class: int = 4, size: int = 8
) -> Path:
    """Writes tiny PNG/JPEG images: class k is uniformly bright (k + 1) / (n + 1), with noise."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", max(1, per_class // 2))):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                level = 255 * (label + 1) / (len(classes) + 1)
                pixels = np.clip(level + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
                suffix = ".png" if index % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"{index}{suffix}")
    return root


def make_cifar(root: Path, *, train: int = 32, val: int = 16, num_classes: int = 10) -> Path:
    """Writes CIFAR-10 python batches (two training batches) with learnable labels: brightness = class."""
    rng = np.random.default_rng(0)

    def batch(count: int) -> dict:
        labels = rng.integers(0, num_classes, count)
        levels = (labels[:, None] * 255 / num_classes + rng.normal(0, 5, (count, 3072))).clip(0, 255)
        return {b"data": levels.astype(np.uint8), b"labels": labels.tolist()}

    root.mkdir(parents=True, exist_ok=True)
    for name, count in (
        ("data_batch_1", train // 2),
        ("data_batch_2", train - train // 2),
        ("test_batch", val),
    ):
        (root / name).write_bytes(pickle.dumps(batch(count), protocol=2))
    names = [f"class{k}".encode() for k in range(num_classes)]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return root
