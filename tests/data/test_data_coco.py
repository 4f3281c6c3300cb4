"""COCO-format data: sample format, images without annotations, clear errors on bad input."""

import json
from pathlib import Path

import pytest
import torch

from awconv.data.coco import coco_detection, parse_coco_spec
from awconv.data.shapes import make_shapes


@pytest.fixture()
def shapes(tmp_path):
    images_dir, annotations = make_shapes(tmp_path, images=6, size=48, seed=0)["train"]
    return images_dir, annotations, json.loads(annotations.read_text())


def _write(tmp_path, content) -> str:
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_training_and_evaluation_samples(shapes) -> None:
    images_dir, annotations, _ = shapes
    train = coco_detection(images_dir, annotations, train=True, min_size=64, max_size=64)
    image, target = train[0]
    assert (
        image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    )
    assert target["boxes"].shape[1] == 4 and target["labels"].dtype == torch.int64
    assert len(target["labels"]) == len(target["boxes"]) == len(target["iscrowd"]) == len(target["area"])
    val = coco_detection(images_dir, annotations, train=False)
    image, target = val[0]
    assert image.shape == (3, 48, 48)  # evaluation keeps the original size
    assert train.categories == {1: "circle", 2: "square", 3: "triangle"}


def test_images_without_annotations_as_torchvision_references(shapes) -> None:
    images_dir, annotations, data = shapes
    empty_id = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty_id]
    annotations.write_text(json.dumps(data))
    assert len(coco_detection(images_dir, annotations, train=True)) == len(data["images"]) - 1
    val = coco_detection(images_dir, annotations, train=False)
    assert len(val) == len(data["images"])
    _, target = val[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_bad_input_names_the_file_and_what_was_expected(shapes, tmp_path) -> None:
    images_dir, annotations, data = shapes
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        coco_detection(images_dir, _write(tmp_path, "{'images': ["), train=True)
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["bbox"][2] = 0
    with pytest.raises(ValueError, match=r"bad\.json: annotation 1 .* expected width > 0"):
        coco_detection(images_dir, _write(tmp_path, bad), train=True)
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["category_id"] = 9
    with pytest.raises(ValueError, match=r"category_id 9, expected one of the categories \[1, 2, 3\]"):
        coco_detection(images_dir, _write(tmp_path, bad), train=True)
    (images_dir / data["images"][1]["file_name"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"missing from .*000002\.png"):
        coco_detection(images_dir, annotations, train=False)
    with pytest.raises(FileNotFoundError, match="annotations file"):
        coco_detection(images_dir, tmp_path / "nope.json", train=False)


def test_parse_coco_spec() -> None:
    assert parse_coco_spec("coco:a/b,c.json") == (Path("a/b"), Path("c.json"))
    with pytest.raises(ValueError, match="--val-data must be coco:IMAGES_DIR,ANNOTATIONS_JSON"):
        parse_coco_spec("voc:x", "--val-data")
