"""Fashion-MNIST: both layouts, gzipped or not, the default lookup, clear errors, the installed set."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from awconv.data import fashion_mnist
from awconv.data.classification import build_classification_data
from awconv.data.fashion_mnist import SYSTEM_DIR, find_fashion_mnist, read_fashion_mnist

SIZES = {"train": 12, "t10k": 5}


def _write_idx(path: Path, array: np.ndarray, magic: int, *, compress: bool) -> None:
    content = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content)
    path.write_bytes(content)


def write_set(folder: Path, *, compress: bool, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Writes the four IDX files of a tiny Fashion-MNIST with random pixels and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, count in SIZES.items():
        images = rng.integers(0, 256, (count, 28, 28))
        labels = rng.integers(0, 10, count)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, 2051, compress=compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, 2049, compress=compress)
        written["train" if prefix == "train" else "test"] = (images, labels)
    return written


def _assert_equal(splits: dict, written: dict) -> None:
    for split, (images, labels) in written.items():
        got_images, got_labels = splits[split]
        assert got_images.dtype == torch.uint8 and got_images.shape == (len(images), 1, 28, 28)
        np.testing.assert_array_equal(got_images[:, 0].numpy(), images)
        np.testing.assert_array_equal(got_labels.numpy(), labels)


@pytest.mark.parametrize("compress", [True, False], ids=["gzipped", "plain"])
def test_original_layout_gzipped_or_not(tmp_path: Path, compress: bool) -> None:
    written = write_set(tmp_path / "fmnist", compress=compress)
    _assert_equal(read_fashion_mnist(tmp_path / "fmnist"), written)


def test_torchvision_layout_is_read_by_torchvision(tmp_path: Path, monkeypatch) -> None:
    written = write_set(tmp_path / "FashionMNIST" / "raw", compress=False)
    read = []
    original = fashion_mnist.FashionMNIST

    def spy(root, train):
        read.append((Path(root), train))
        return original(root, train=train)

    monkeypatch.setattr(fashion_mnist, "FashionMNIST", spy)
    _assert_equal(read_fashion_mnist(tmp_path), written)  # the root above FashionMNIST/raw
    assert read == [(tmp_path, True), (tmp_path, False)]
    _assert_equal(read_fashion_mnist(tmp_path / "FashionMNIST" / "raw"), written)  # the raw folder itself


def test_spec_gives_the_official_split_with_test_as_validation(tmp_path: Path) -> None:
    written = write_set(tmp_path, compress=True)
    data = build_classification_data(f"fashion-mnist:{tmp_path}")
    assert (len(data.train), len(data.val), data.num_classes, data.in_chans, data.image_size) == (
        12,
        5,
        10,
        1,
        28,
    )
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    train_pixels = written["train"][0] / 255
    image, label = data.val[3]
    expected = (written["test"][0][3] / 255 - train_pixels.mean()) / train_pixels.std(ddof=1)
    np.testing.assert_allclose(image[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert label == written["test"][1][3]
    resized = build_classification_data(f"fashion-mnist:{tmp_path}", image_size=16)
    assert resized.train[0][0].shape == (1, 16, 16)


def test_default_lookup_searches_the_debian_path_then_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"make data") as error:
        find_fashion_mnist()
    assert "\n" not in str(error.value) and "apt-get install dataset-fashion-mnist" in str(error.value)
    cached = tmp_path / "cache" / "awconv" / "usr/share/datasets/fashion-mnist"
    write_set(cached, compress=True)
    assert find_fashion_mnist() == cached
    write_set(fashion_mnist.SYSTEM_DIR, compress=True, seed=1)
    assert find_fashion_mnist() == fashion_mnist.SYSTEM_DIR


def _truncate(folder: Path) -> None:
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))


def _bad_magic(folder: Path) -> None:
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + gzip.decompress(path.read_bytes())[4:]))


def _bad_label(folder: Path) -> None:
    _write_idx(folder / "t10k-labels-idx1-ubyte", np.full(5, 10), 2049, compress=True)


def _corrupt_gzip(folder: Path) -> None:
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda folder: (folder / "t10k-labels-idx1-ubyte.gz").unlink(),
            "Fashion-MNIST not found.*make data",
        ),
        (_truncate, "holds 3910 values, its header says"),
        (_bad_magic, "not an IDX file of 1-D unsigned bytes"),
        (_bad_label, "outside 0..9"),
        (_corrupt_gzip, "cannot read IDX file"),
    ],
    ids=["missing-file", "truncated", "bad-magic", "label-out-of-range", "corrupt-gzip"],
)
def test_damaged_sets_give_one_line_errors(tmp_path: Path, damage, match) -> None:
    write_set(tmp_path, compress=True)
    damage(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=match) as error:
        build_classification_data(f"fashion-mnist:{tmp_path}")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist is not installed (make data)")
def test_installed_debian_set_is_the_full_fashion_mnist() -> None:
    splits = read_fashion_mnist()
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    assert train_images.shape == (60000, 1, 28, 28) and test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train_labels).tolist() == [6000] * 10
    assert torch.bincount(test_labels).tolist() == [1000] * 10
    assert (train_labels[:3].tolist(), test_labels[:3].tolist()) == ([9, 0, 0], [9, 2, 1])
    assert abs(train_images.float().mean().item() / 255 - 0.2860) < 1e-3  # the published mean


def test_cache_is_xdg_cache_home_or_dot_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder `make data` unpacks into (the Makefile's DATA_CACHE) is where the loader looks."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert fashion_mnist.fashion_mnist_cache() == tmp_path / "home" / ".cache" / "awconv"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fashion_mnist.fashion_mnist_cache() == tmp_path / "xdg" / "awconv"


def test_a_raw_subfolder_is_found_and_a_missing_set_names_every_folder_searched(tmp_path: Path) -> None:
    written = write_set(tmp_path / "raw", compress=True)
    _assert_equal(read_fashion_mnist(tmp_path), written)
    with pytest.raises(FileNotFoundError) as raised:
        find_fashion_mnist(tmp_path / "empty")
    empty = tmp_path / "empty"
    assert str(raised.value).startswith(
        f"Fashion-MNIST not found in '{empty}' or '{empty / 'FashionMNIST' / 'raw'}' or '{empty / 'raw'}' "
        "(expected train-images-idx3-ubyte[.gz] and its three siblings); "
    )


def test_labels_and_images_of_different_counts_are_named(tmp_path: Path) -> None:
    write_set(tmp_path, compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), 2049, compress=False)  # 5 images
    with pytest.raises(ValueError) as raised:
        read_fashion_mnist(tmp_path)
    assert str(raised.value) == (
        f"Fashion-MNIST test split in '{tmp_path}': (5, 28, 28) images and 4 labels, "
        "expected (N, 28, 28) images and N labels"
    )


def test_an_empty_idx_file_is_an_empty_array(tmp_path: Path) -> None:
    _write_idx(tmp_path / "labels", np.zeros(0), 2049, compress=False)  # the header alone
    assert fashion_mnist.read_idx(tmp_path / "labels", 1).shape == (0,)


@pytest.mark.parametrize(("size", "padding"), [(28, 4), (6, 1)])
def test_training_crops_pad_a_seventh_of_the_side_at_least_one_pixel(tmp_path: Path, size, padding) -> None:
    from torchvision.transforms import v2

    write_set(tmp_path, compress=False)
    data = build_classification_data(f"fashion-mnist:{tmp_path}", image_size=size)
    (crop,) = [t for t in data.train.transform.transforms if isinstance(t, v2.RandomCrop)]
    assert crop.padding == [padding] * 4


def test_torchvision_layout_gzipped_is_read_by_awconv(tmp_path: Path) -> None:
    """torchvision reads its raw/ folder uncompressed only; gzipped files there are read here."""
    written = write_set(tmp_path / "FashionMNIST" / "raw", compress=True)
    _assert_equal(read_fashion_mnist(tmp_path), written)
