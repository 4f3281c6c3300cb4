"""Classification data sets: layouts, formats, splits and clear errors on bad input."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_data import make_cifar, make_image_folder
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from awconv.data.classification import (
    DATA_SOURCES,
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    build_classification_data,
    resolve_data_spec,
)


def test_image_folder_sizes_labels_and_transforms(tmp_path: Path) -> None:
    data = build_classification_data(f"imagefolder:{make_image_folder(tmp_path)}", image_size=8)
    assert (len(data.train), len(data.val), data.num_classes, data.in_chans) == (8, 4, 2, 3)
    assert data.classes == ("a", "b")
    image, label = data.val[3]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and label == 1


def test_image_folder_skips_non_image_files_with_a_warning(tmp_path: Path, caplog) -> None:
    root = make_image_folder(tmp_path)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / "9.png").write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING):
        data = build_classification_data(f"imagefolder:{root}", image_size=8)
        assert len(data.train) == 9
        images = [data.train[i][0] for i in range(len(data.train))]
    assert "notes.txt" in caplog.text and "9.png" in caplog.text
    assert all(image.shape == (3, 8, 8) for image in images)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda root: root / "missing", FileNotFoundError, "does not exist"),
        (lambda root: root, FileNotFoundError, "train"),
        (lambda root: _empty_class(root), ValueError, "holds no image files"),
        (lambda root: _val_class_missing(root), ValueError, "differ"),
    ],
    ids=["missing-dir", "no-train-split", "empty-class", "val-classes-differ"],
)
def test_image_folder_bad_layouts_raise_clear_errors(tmp_path: Path, make, error, match) -> None:
    with pytest.raises(error, match=match):
        build_classification_data(f"imagefolder:{make(tmp_path)}")


def _empty_class(root: Path) -> Path:
    make_image_folder(root)
    (root / "train" / "c").mkdir()
    (root / "val" / "c").mkdir()
    return root


def _val_class_missing(root: Path) -> Path:
    make_image_folder(root)
    for file in (root / "val" / "b").iterdir():
        file.unlink()
    (root / "val" / "b").rmdir()
    return root


@pytest.mark.parametrize("spec", ["nosuchdata", "imagefolder", "mnist5k:x", "cifar:"])
def test_unknown_or_malformed_data_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="data"):
        build_classification_data(spec)


def test_cifar10_python_batches(tmp_path: Path) -> None:
    data = build_classification_data(f"cifar:{make_cifar(tmp_path)}")
    assert (len(data.train), len(data.val), data.num_classes, data.in_chans, data.image_size) == (
        32,
        16,
        10,
        3,
        32,
    )
    assert data.train[0][0].shape == (3, 32, 32)
    assert data.classes[3] == "class3"


def test_cifar100_layout_in_its_subfolder(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in (("train", 6), ("test", 4)):
        batch = {b"data": rng.integers(0, 255, (count, 3072), dtype=np.uint8), b"fine_labels": [1] * count}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"x", b"y"]}))
    data = build_classification_data(f"cifar:{tmp_path}", image_size=16)
    assert (len(data.train), len(data.val), data.num_classes) == (6, 4, 2)
    assert data.val[0][0].shape == (3, 16, 16)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_loader_refuses_code_in_pickles(tmp_path: Path) -> None:
    root = make_cifar(tmp_path)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        build_classification_data(f"cifar:{root}")


def test_cifar_folder_without_meta(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a CIFAR"):
        build_classification_data(f"cifar:{tmp_path}")


@pytest.mark.parametrize(
    ("spec", "sizes", "side"), [("digits", (1437, 360), 8), ("mnist5k", (4000, 1000), 28)]
)
def test_small_sets_fixed_stratified_split(spec: str, sizes: tuple[int, int], side: int) -> None:
    data = build_classification_data(spec)
    again = build_classification_data(spec)
    assert (len(data.train), len(data.val)) == sizes
    assert (data.num_classes, data.in_chans, data.image_size) == (10, 1, side)
    assert torch.equal(data.val.labels, again.val.labels) and torch.equal(data.val.images, again.val.images)
    everything = torch.cat([data.train.labels, data.val.labels])
    expected = torch.bincount(everything, minlength=10) * len(data.val) / len(everything)
    assert (torch.bincount(data.val.labels, minlength=10) - expected).abs().max() <= 1  # stratified
    image, _ = data.val[0]
    assert image.shape == (1, side, side)
    assert data.train.images.dtype == torch.uint8 and data.train.images.max() == 255  # bytes, as read
    assert build_classification_data(spec, image_size=12).train[0][0].shape == (1, 12, 12)


def test_resolve_data_spec_makes_only_the_directory_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_spec("cifar:data") == f"cifar:{tmp_path / 'data'}"
    assert resolve_data_spec("imagefolder:~/sets") == f"imagefolder:{tmp_path / 'home' / 'sets'}"
    assert resolve_data_spec("imagefolder:/a:b") == "imagefolder:/a:b"
    assert [resolve_data_spec(spec) for spec in ("digits", "cifar:")] == ["digits", "cifar:"]


def test_image_folder_validation_transform_is_resize_256_crop_224(tmp_path: Path) -> None:
    """At size 224 the validation image is resized to 256 (antialiased), centre-cropped, scaled to
    [0, 1] and normalised with ImageNet's statistics."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(
                tmp_path / split / name / "0.png"
            )
    data = build_classification_data(f"imagefolder:{tmp_path}", image_size=224)
    assert data.image_size == 224
    image, label = data.val[1]
    pixels = F.pil_to_tensor(Image.open(tmp_path / "val" / "b" / "0.png"))
    resized = F.center_crop(F.resize(pixels, 256, antialias=True), 224).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(image, (resized - mean.view(3, 1, 1)) / std.view(3, 1, 1), rtol=0, atol=1e-5)
    assert label == 1


def test_image_folder_without_class_folders_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError) as error:
        build_classification_data(f"imagefolder:{tmp_path}")
    train = tmp_path / "train"
    assert str(error.value) == f"'{train}' holds no class folders: expected {train}/<class>/*"


def test_image_folder_messages_and_the_neighbour_of_an_unreadable_image(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "0.png").write_bytes(b"not a png")
    for index, level in ((1, 10), (2, 200)):
        Image.fromarray(np.full((2, 2, 3), level, dtype=np.uint8)).save(folder / f"{index}.png")
    (folder / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as error:
        ImageFolderDataset(tmp_path, ("a", "zz"), v2.Identity())
    assert str(error.value) == f"class folder '{tmp_path / 'zz'}' is missing (classes are ['a', 'zz'])"
    with caplog.at_level(logging.WARNING):
        dataset = ImageFolderDataset(tmp_path, ("a",), v2.Identity())
        image, label = dataset[0]  # 0.png cannot be read: the next sample, 1.png, takes its place
    assert image.unique().tolist() == [10] and label == 0
    skipped, unreadable = (r.getMessage() for r in caplog.records[-2:])
    assert (
        skipped
        == f"skipping '{folder / 'notes.txt'}': not an image file (expected one of {IMAGE_EXTENSIONS})"
    )
    assert unreadable.startswith(
        f"skipping unreadable image '{folder / '0.png'}': cannot identify image file"
    )
    for name in ("1.png", "2.png"):
        (folder / name).write_bytes(b"")
    with pytest.raises(ValueError) as error:
        dataset[0]
    assert str(error.value) == f"no image under '{tmp_path}' could be read"


def test_cifar_missing_batches_are_named(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "data", train=4, val=2, num_classes=2)
    (root / "test_batch").unlink()
    with pytest.raises(FileNotFoundError) as error:
        build_classification_data(f"cifar:{root}")
    assert str(error.value) == f"CIFAR batch '{root / 'test_batch'}' is missing"
    for batch in root.glob("data_batch_*"):
        batch.unlink()
    with pytest.raises(FileNotFoundError) as error:
        build_classification_data(f"cifar:{root}")
    assert str(error.value) == f"'{root}' holds no data_batch_* files"


def test_image_folder_gives_grayscale_images_three_channels(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((2, 3), 90, dtype=np.uint8), mode="L").save(tmp_path / "a" / "0.png")
    image, _ = ImageFolderDataset(tmp_path, ("a",), v2.Identity())[0]
    assert image.shape == (3, 2, 3) and image.unique().tolist() == [90]


def test_digits_are_sklearns_images_scaled_to_bytes() -> None:
    from sklearn.datasets import load_digits

    data = build_classification_data("digits")
    digits = load_digits()
    images = torch.cat([data.train.images, data.val.images])
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 8, 8)
    assert data.classes == tuple(str(c) for c in range(10))
    expected = torch.from_numpy(np.rint(digits.images * 255.0 / 16.0).astype(np.uint8))
    assert images.max() == 255  # sklearn's 16 becomes 255
    # the split's order is its own: the same multiset of images, each byte for byte
    assert sorted(map(bytes, images.flatten(1).numpy())) == sorted(map(bytes, expected.flatten(1).numpy()))


def test_small_sets_augment_with_a_light_affine() -> None:
    data = build_classification_data("digits")
    (affine,) = [t for t in data.train.transform.transforms if isinstance(t, v2.RandomAffine)]
    assert (affine.degrees, affine.translate, affine.scale) == ([-10.0, 10.0], (0.1, 0.1), (0.9, 1.1))


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"spec": 5}, TypeError, f"data must be a string such as {DATA_SOURCES}, got int"),
        ({"spec": "digits", "image_size": 0}, ValueError, "image_size must be a positive int, got 0"),
        ({"spec": "digits", "image_size": "8"}, ValueError, "image_size must be a positive int, got '8'"),
        ({"spec": "pets"}, ValueError, f"unknown data set 'pets': expected one of {', '.join(DATA_SOURCES)}"),
    ],
)
def test_bad_data_arguments_get_exact_messages(arguments: dict, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        build_classification_data(**arguments)
    assert str(raised.value) == message


def test_one_pixel_images_are_allowed() -> None:
    assert build_classification_data("digits", image_size=1).val[0][0].shape == (1, 1, 1)


@pytest.mark.parametrize("interpolation", ["bicubic", "nearest"])
def test_in_memory_transforms_resize_crop_and_normalise_as_asked(interpolation: str) -> None:
    """12-px images at size 8 with a 0.8 centre crop: training resized to 8, validation to 10 then
    cropped to 8, both with antialiasing and the asked interpolation, normalised by the training
    set's channel statistics; compared with torchvision's functional transforms applied by hand."""
    from awconv.data.augment import Augmentation
    from awconv.data.classification import _in_memory

    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8, generator=generator)
    val = torch.randint(0, 256, (2, 3, 12, 12), dtype=torch.uint8, generator=generator)
    augmentation = Augmentation(val_crop_pct=0.8, interpolation=interpolation)
    data = _in_memory(train, torch.arange(6) % 2, val, torch.arange(2), ("a", "b"), 8, [], augmentation)
    pixels = train.double().div(255).permute(1, 0, 2, 3).flatten(1)
    mean, std = pixels.mean(1).tolist(), pixels.std(1).tolist()
    mode = v2.InterpolationMode(interpolation)

    def by_hand(image, side, crop):
        image = F.resize(image, [side], interpolation=mode, antialias=True)
        image = F.center_crop(image, [crop]) if crop else image
        return F.normalize(F.to_dtype(image, torch.float32, scale=True), mean, std)

    assert torch.allclose(data.train[0][0], by_hand(train[0], 8, None), atol=1e-5)
    assert torch.allclose(data.val[1][0], by_hand(val[1], 10, 8), atol=1e-5)
    assert data.val[1][0].shape == (3, 8, 8) and (data.num_classes, data.in_chans) == (2, 3)


def test_image_folder_images_default_to_224_pixels(tmp_path: Path) -> None:
    data = build_classification_data(f"imagefolder:{make_image_folder(tmp_path)}")
    assert data.image_size == 224 and data.val[0][0].shape == (3, 224, 224)


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as the original CIFAR pickles
    hold them: Python 3 reads those back only with ``encoding="bytes"`` (or latin-1)."""

    def save_bytes(self, obj: bytes) -> None:
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + size.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch: ClassVar[dict] = {**pickle._Pickler.dispatch, bytes: save_bytes}


def _python2_pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as file:
        _Python2Pickler(file, protocol=2).dump(obj)


def test_cifar_in_python2_pickles_as_the_original_release(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"  # the archive's folder, found under the given one
    root.mkdir()
    written = {}
    for name, count in (("data_batch_1", 6), ("test_batch", 4)):
        data, labels = rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, 3, count).tolist()
        written[name] = (data, labels)
        _python2_pickle(root / name, {b"data": data, b"labels": labels, b"batch_label": b"batch"})
    _python2_pickle(root / "batches.meta", {b"label_names": [b"cat", b"dog", b"\xc3\xa9lan"]})
    data = build_classification_data(f"cifar:{tmp_path}")
    assert data.classes == ("cat", "dog", "élan")
    assert data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images, torch.from_numpy(written["data_batch_1"][0]).view(6, 3, 32, 32))
    assert data.val.labels.tolist() == written["test_batch"][1]


def test_cifar_with_text_keys_lists_and_names(tmp_path: Path) -> None:
    """Batches as other tools write them: str keys and names, data and labels as Python lists."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 3072)).tolist()
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps({"data": images, "labels": [0, 1, 1]}))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": ["plane", "ship"]}))
    data = build_classification_data(f"cifar:{tmp_path}")
    assert data.classes == ("plane", "ship")
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert torch.equal(data.val.images, torch.tensor(images, dtype=torch.uint8).view(3, 3, 32, 32))
    (crop,) = [t for t in data.train.transform.transforms if isinstance(t, v2.RandomCrop)]
    assert (crop.padding, crop.padding_mode) == ([4, 4, 4, 4], "reflect")  # an eighth of 32 px


def test_image_folder_transforms_take_the_asked_interpolation_with_antialiasing(tmp_path: Path) -> None:
    from awconv.data.augment import Augmentation

    root = make_image_folder(tmp_path)
    data = build_classification_data(
        f"imagefolder:{root}", image_size=16, augmentation=Augmentation(interpolation="bicubic")
    )
    (crop,) = [t for t in data.train.transform.transforms if isinstance(t, v2.RandomResizedCrop)]
    (resize,) = [t for t in data.val.transform.transforms if isinstance(t, v2.Resize)]
    bicubic = v2.InterpolationMode.BICUBIC
    assert (crop.interpolation, crop.antialias, resize.interpolation, resize.antialias) == (
        bicubic,
        True,
        bicubic,
        True,
    )


def _rand_augment_hparams(data) -> dict:
    """The hyper-parameters of the RandAugment in a data set's training transform."""
    (rand_augment,) = [t for t in data.train.transform.transforms if type(t).__name__ == "RandAugment"]
    return rand_augment.ops[0].hparams


def test_rand_augment_translates_by_the_image_size_and_fills_by_the_channels(tmp_path: Path) -> None:
    """timm's RandAugment: translations up to 0.45 of the side the model sees, the fill ImageNet's
    mean in RGB and mid-grey in one channel; from files and in memory alike."""
    from awconv.data.augment import Augmentation

    augmentation = Augmentation(auto_augment="rand-m9-mstd0.5")
    folder = build_classification_data(
        f"imagefolder:{make_image_folder(tmp_path)}", image_size=40, augmentation=augmentation
    )
    assert {k: _rand_augment_hparams(folder)[k] for k in ("translate_const", "img_mean")} == {
        "translate_const": 18,
        "img_mean": (124, 116, 104),
    }
    cifar = build_classification_data(f"cifar:{make_cifar(tmp_path / 'cifar')}", augmentation=augmentation)
    assert _rand_augment_hparams(cifar)["img_mean"] == (124, 116, 104)  # in memory, three channels
    digits = build_classification_data("digits", image_size=20, augmentation=augmentation)
    assert {k: _rand_augment_hparams(digits)[k] for k in ("translate_const", "img_mean")} == {
        "translate_const": 9,
        "img_mean": 128,
    }
