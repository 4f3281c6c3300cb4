"""Fashion-MNIST (Xiao et al., arXiv 1708.07747) from its standard IDX files.

70,000 28x28 grey images of 10 kinds of clothing (Zalando, MIT licence): the official 60,000
training images and the 10,000 test images, which serve as the validation set. Nothing is
downloaded; the files are read where they lie:

- the original release's layout: ``DIR/train-images-idx3-ubyte.gz`` and its three siblings,
  gzipped or not (Debian's ``dataset-fashion-mnist`` package installs them in
  ``/usr/share/datasets/fashion-mnist``);
- torchvision's layout: ``DIR/FashionMNIST/raw/`` with the uncompressed files, read by
  ``torchvision.datasets.FashionMNIST``.

Without ``DIR`` the Debian path is searched, then the same path under ``fashion_mnist_cache()``,
where ``make data`` unpacks the package (``apt-get download`` and ``dpkg -x``) when it does not
run as root.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import FashionMNIST

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "SYSTEM_DIR",
    "fashion_mnist_cache",
    "find_fashion_mnist",
    "read_fashion_mnist",
    "read_idx",
]

PACKAGE_PATH = "usr/share/datasets/fashion-mnist"  # where dataset-fashion-mnist puts the files
SYSTEM_DIR = Path("/") / PACKAGE_PATH
INSTALL_HINT = "install it with `make data` (or `apt-get install dataset-fashion-mnist` as root)"
# (images, labels) file names of each split, without the optional ".gz".
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES: tuple[str, ...] = tuple(FashionMNIST.classes)  # index = label
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3 dimensions (images) or 1 (labels)
_SIDE = 28
_CLASSES = 10


def fashion_mnist_cache() -> Path:
    """Where ``make data`` unpacks the Debian package without root: ``$XDG_CACHE_HOME/awconv``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "awconv"


def _file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _holds_set(folder: Path) -> bool:
    return all(_file(folder, name) for names in FASHION_MNIST_FILES.values() for name in names)


def find_fashion_mnist(location: str | Path | None = None) -> Path:
    """The folder holding the four IDX files.

    Args:
        location: a folder in either layout (see the module docstring); ``None`` searches
            ``SYSTEM_DIR`` and the same path under ``fashion_mnist_cache()``.

    Raises:
        FileNotFoundError: no folder holds all four files (the message names the command that
            installs the set).
    """
    if location is None:
        candidates = [SYSTEM_DIR, fashion_mnist_cache() / PACKAGE_PATH]
    else:
        root = Path(location).expanduser()
        candidates = [root, root / "FashionMNIST" / "raw", root / "raw"]
    for folder in candidates:
        if _holds_set(folder):
            return folder
    searched = " or ".join(f"'{folder}'" for folder in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {searched} (expected train-images-idx3-ubyte[.gz] and its three "
        f"siblings); {INSTALL_HINT}"
    )


def read_idx(path: Path, dims: int) -> Tensor:
    """Reads an IDX file of unsigned bytes (gzipped when its name ends in ``.gz``).

    Args:
        path: the file.
        dims: 3 for images (N, 28, 28), 1 for labels (N,).

    Returns:
        uint8, shaped as the file's header says.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read IDX file '{path}': {error}") from error
    header = 4 * (dims + 1)
    if len(data) < header or int.from_bytes(data[:4], "big") != _IDX_MAGIC[dims]:
        raise ValueError(
            f"'{path}' is not an IDX file of {dims}-D unsigned bytes (expected magic number "
            f"{_IDX_MAGIC[dims]:#010x})"
        )
    shape = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(dims)]
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(f"'{path}' holds {len(data) - header} values, its header says {shape}")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy())


def _check_split(folder: Path, split: str, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if images.shape[1:] != (_SIDE, _SIDE) or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} split in '{folder}': {tuple(images.shape)} images and {len(labels)} "
            f"labels, expected (N, {_SIDE}, {_SIDE}) images and N labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= _CLASSES):
        raise ValueError(f"Fashion-MNIST {split} labels in '{folder}' are outside 0..{_CLASSES - 1}")
    return images.unsqueeze(1), labels.long()


def read_fashion_mnist(location: str | Path | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """Both official splits.

    Args:
        location: see ``find_fashion_mnist``.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``: images (N, 1, 28, 28) uint8,
        labels (N,) int64 in 0..9 (class names: ``FASHION_MNIST_CLASSES``).
    """
    folder = find_fashion_mnist(location)
    files = {split: [_file(folder, name) for name in names] for split, names in FASHION_MNIST_FILES.items()}
    plain = all(path.suffix != ".gz" for paths in files.values() for path in paths)
    splits = {}
    for split, (images_path, labels_path) in files.items():
        if plain and folder.parts[-2:] == ("FashionMNIST", "raw"):  # torchvision's own layout
            dataset = FashionMNIST(folder.parent.parent, train=split == "train")
            images, labels = dataset.data, dataset.targets
        else:
            images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        splits[split] = _check_split(folder, split, images, labels)
    return splits
