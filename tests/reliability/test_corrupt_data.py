"""Corrupt data: bad image files in an ImageFolder, bad COCO json.

Policy (docs/reliability.md): an ImageFolder file that cannot be decoded is skipped with a warning
naming it, and the run goes on; grayscale and RGBA images are converted to RGB. A COCO json with
missing fields or repeated ids stops before training with the file and the entry named; boxes
reaching beyond their image are counted in a warning and clipped in training.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_data import make_image_folder

from awconv.data.classification import build_classification_data
from awconv.data.coco import coco_detection
from awconv.data.shapes import make_shapes


def _bad_files(folder: Path) -> dict[str, Path]:
    """Writes a truncated JPEG, a zero-byte PNG, a grayscale and an RGBA image into ``folder``."""
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    whole = folder / "whole.jpg"
    Image.fromarray(pixels).save(whole)
    files = {
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.png",
        "gray": folder / "gray.png",
        "rgba": folder / "rgba.png",
    }
    files["truncated"].write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    whole.unlink()
    files["empty"].write_bytes(b"")
    Image.fromarray(pixels[..., 0]).save(files["gray"])
    Image.fromarray(np.dstack([pixels, pixels[..., :1]])).save(files["rgba"])
    return files


def test_image_folder_skips_unreadable_files_and_converts_modes(tmp_path: Path, caplog) -> None:
    root = make_image_folder(tmp_path, per_class=2)
    files = _bad_files(root / "train" / "a")
    data = build_classification_data(f"imagefolder:{root}", image_size=8)
    samples = data.train.samples
    with caplog.at_level(logging.WARNING):
        loaded = [data.train[index] for index in range(len(samples))]
    assert all(image.shape == (3, 8, 8) and torch.isfinite(image).all() for image, _ in loaded)
    warned = caplog.text
    assert str(files["truncated"]) in warned and str(files["empty"]) in warned
    assert str(files["gray"]) not in warned and str(files["rgba"]) not in warned
    index = {path: i for i, (path, _) in enumerate(samples)}
    assert data.train[index[files["gray"]]][0].shape == (3, 8, 8)


def test_image_folder_with_only_unreadable_files_says_so(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "empty.jpg").write_bytes(b"")
    data = build_classification_data(f"imagefolder:{root}", image_size=8)
    with pytest.raises(ValueError, match=r"no image under .* could be read"):
        data.train[0]


@pytest.fixture()
def coco(tmp_path: Path) -> tuple[Path, Path, dict]:
    images_dir, annotations = make_shapes(tmp_path, images=4, size=32, seed=0)["train"]
    return images_dir, annotations, json.loads(annotations.read_text())


def _rewrite(annotations: Path, content: dict) -> Path:
    annotations.write_text(json.dumps(content))
    return annotations


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\] lacks \['file_name'\]"),
        (lambda d: d["annotations"][0].pop("bbox"), r"annotations\[0\] lacks \['bbox'\]"),
        (lambda d: d["categories"][0].pop("name"), r"categories\[0\] lacks \['name'\]"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "annotations ids .* more than once"),
        (lambda d: d["images"].append(dict(d["images"][0])), "images ids .* more than once"),
        (lambda d: d.pop("categories"), "must hold a list 'categories'"),
        (lambda d: d["images"][0].pop("id"), "is not a COCO detection file"),
    ],
    ids=[
        "no-file-name",
        "no-bbox",
        "no-category-name",
        "repeated-annotation",
        "repeated-image",
        "no-cats",
        "no-id",
    ],
)
def test_bad_coco_json_stops_with_file_and_entry(coco, change, message: str) -> None:
    images_dir, annotations, content = coco
    change(content)
    with pytest.raises(ValueError, match=message) as error:
        coco_detection(images_dir, _rewrite(annotations, content), train=True)
    assert str(annotations) in str(error.value) and len(str(error.value).splitlines()) == 1


def test_boxes_outside_the_image_are_reported_and_clipped(coco, caplog) -> None:
    images_dir, annotations, content = coco
    image = content["images"][0]
    for ann in content["annotations"]:
        if ann["image_id"] == image["id"]:
            ann["bbox"] = [image["width"] - 4, image["height"] - 4, 20, 20]
    with caplog.at_level(logging.WARNING):
        train = coco_detection(images_dir, _rewrite(annotations, content), train=True)
    assert "reach beyond their image" in caplog.text and image["file_name"] in caplog.text
    _, target = train[0]
    assert target["image_id"] == image["id"]
    boxes = target["boxes"]
    assert len(boxes) > 0 and boxes[:, 2].max() <= 32 and boxes[:, 3].max() <= 32
    val = coco_detection(images_dir, annotations, train=False)
    assert len(val) == len(content["images"])
