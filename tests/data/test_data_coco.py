"""COCO-format data: samples equal to the json, the files people have, masks, clear errors on bad input."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from awconv.data.coco import aspect_ratios, coco_detection, parse_coco_spec
from awconv.data.shapes import make_shapes

# The shapes set's category ids 1, 2, 3 renamed to ids of any value, 0 included: sorted, they are
# labels 1, 2, 3 (0 -> 1, 3 -> 2, 7 -> 3).
NEW_IDS = {1: 7, 2: 0, 3: 3}
LABEL_OF = {0: 1, 3: 2, 7: 3}


@pytest.fixture()
def shapes(tmp_path):
    images_dir, annotations = make_shapes(tmp_path, images=6, size=48, seed=0)["train"]
    return images_dir, annotations, json.loads(annotations.read_text())


def _write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _with_new_ids(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    for ann in data["annotations"]:
        ann["category_id"] = NEW_IDS[ann["category_id"]]
    for cat in data["categories"]:
        cat["id"] = NEW_IDS[cat["id"]]
    return data


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def test_samples_equal_the_json_with_contiguous_labels_for_any_category_ids(shapes) -> None:
    images_dir, annotations, data = shapes
    data = _with_new_ids(data)
    _write(annotations, data)
    val = coco_detection(images_dir, annotations, train=False)
    train = coco_detection(images_dir, annotations, train=True, flip_prob=0.0)
    assert val.categories == {0: "square", 3: "triangle", 7: "circle"}  # label order: sorted ids
    by_image = {
        img["id"]: [a for a in data["annotations"] if a["image_id"] == img["id"]] for img in data["images"]
    }
    assert len(val) == len(train) == len(data["images"])
    for dataset in (val, train):
        for index in range(len(dataset)):
            image, target = dataset[index]
            anns = by_image[target["image_id"]]
            assert image.shape == (3, 48, 48) and image.dtype == torch.float32  # the detector resizes
            assert target["labels"].tolist() == [LABEL_OF[a["category_id"]] for a in anns]
            torch.testing.assert_close(
                target["boxes"].as_subclass(torch.Tensor), torch.tensor([_xyxy(a["bbox"]) for a in anns])
            )
            torch.testing.assert_close(target["area"], torch.tensor([a["area"] for a in anns]))
            assert target["iscrowd"].tolist() == [0] * len(anns)


def test_degenerate_boxes_are_dropped_with_one_warning_and_sub_pixel_boxes_left_out_of_training(
    shapes, caplog
) -> None:
    images_dir, annotations, data = shapes
    first, second, third = (img["id"] for img in data["images"][:3])
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in (first, second, third)]
    new = [
        (first, [30, 5, 0, 10]),  # zero width: dropped, as torchvision's references and mmdet do
        (first, [5, 5, 20, 20]),
        (second, [5, 5, 10, 0.5]),  # usable in evaluation, too thin to train on (both sides must be > 1)
        (second, [30, 5, -3, 10]),  # negative width: dropped
        (third, [5, 5, 0.5, 10]),
    ]
    for index, (image_id, bbox) in enumerate(new):
        data["annotations"].append({"id": 1000 + index, "image_id": image_id, "category_id": 2, "bbox": bbox})
    _write(annotations, data)
    with caplog.at_level(logging.WARNING):
        val = coco_detection(images_dir, annotations, train=False)
    warnings = [r.message for r in caplog.records if "zero width or height dropped" in r.message]
    assert len(warnings) == 1 and "2 box(es)" in warnings[0] and "annotation 1000" in warnings[0]
    assert len(val.coco.anns) == len(data["annotations"]) - 2
    train = coco_detection(images_dir, annotations, train=True)
    assert first in train.ids and second not in train.ids and third not in train.ids
    _, target = val[val.ids.index(second)]
    assert target["boxes"].tolist() == [[5.0, 5.0, 15.0, 5.5]]


def test_boxes_cut_to_nothing_by_the_image_edge_lose_their_labels_too(shapes) -> None:
    images_dir, annotations, data = shapes
    image = data["images"][0]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != image["id"]]
    boxes = [([47.5, 5, 10, 10], 1), ([4, 6, 20, 12], 3), ([10, 47.8, 5, 9], 2)]
    for index, (bbox, category) in enumerate(boxes):
        data["annotations"].append(
            {"id": 900 + index, "image_id": image["id"], "category_id": category, "bbox": bbox}
        )
    _write(annotations, data)
    train = coco_detection(images_dir, annotations, train=True, flip_prob=0.0)
    _, target = train[train.ids.index(image["id"])]
    # Clipped to the 48 x 48 image the first and last boxes are under a pixel wide: removed with
    # their labels, crowd flags and areas.
    assert target["boxes"].tolist() == [[4.0, 6.0, 24.0, 18.0]]
    assert target["labels"].tolist() == [3] and target["iscrowd"].tolist() == [0]
    assert target["area"].tolist() == [240.0]


def test_missing_area_iscrowd_and_image_size_are_filled(shapes) -> None:
    images_dir, annotations, data = shapes
    for ann in data["annotations"]:
        ann.pop("area"), ann.pop("iscrowd")
    data["annotations"][0]["iscrowd"] = 1
    for img in data["images"]:
        img.pop("width"), img.pop("height")
    _write(annotations, data)
    val = coco_detection(images_dir, annotations, train=False)
    _, target = val[0]
    anns = [a for a in data["annotations"] if a["image_id"] == target["image_id"]]
    torch.testing.assert_close(target["area"], torch.tensor([a["bbox"][2] * a["bbox"][3] for a in anns]))
    assert target["iscrowd"].tolist() == [1] + [0] * (len(anns) - 1)
    assert aspect_ratios(val) == [1.0] * len(val)
    train = coco_detection(images_dir, annotations, train=True, flip_prob=0.0)
    _, target = train[train.ids.index(anns[0]["image_id"])]
    assert len(target["boxes"]) == len(anns) - 1  # training drops crowd boxes


def _uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE (crowd annotations use it): run lengths in column-major order, zeros first."""
    flat = binary.flatten(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": list(binary.shape), "counts": counts if flat[0] == 0 else [0, *counts]}


def test_masks_from_polygons_compressed_and_uncompressed_rle(shapes) -> None:
    images_dir, annotations, data = shapes
    reference = COCO(str(annotations))  # the polygons, decoded by pycocotools itself
    image = next(img for img in data["images"] if len(reference.imgToAnns[img["id"]]) >= 3)
    anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    expected = torch.stack([torch.from_numpy(reference.annToMask(reference.anns[a["id"]])) for a in anns])
    compressed = mask_utils.merge(
        mask_utils.frPyObjects(anns[0]["segmentation"], image["height"], image["width"])
    )
    anns[0]["segmentation"] = {"size": compressed["size"], "counts": compressed["counts"].decode()}
    anns[1]["segmentation"] = _uncompressed_rle(expected[1].numpy())
    assert (
        mask_utils.decode(mask_utils.frPyObjects(anns[1]["segmentation"], 48, 48)) == expected[1].numpy()
    ).all()
    _write(annotations, data)
    val = coco_detection(images_dir, annotations, train=False, masks=True)
    _, target = val[val.ids.index(image["id"])]
    assert target["masks"].dtype == torch.uint8
    assert torch.equal(target["masks"].as_subclass(torch.Tensor), expected)
    train = coco_detection(images_dir, annotations, train=True, masks=True, flip_prob=1.0)
    _, target = train[train.ids.index(image["id"])]
    assert torch.equal(target["masks"].as_subclass(torch.Tensor), expected.flip(-1))
    x0 = torch.tensor([48 - a["bbox"][0] - a["bbox"][2] for a in anns])
    torch.testing.assert_close(target["boxes"][:, 0], x0)


def test_images_without_annotations_as_torchvision_references(shapes) -> None:
    images_dir, annotations, data = shapes
    empty_id = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty_id]
    _write(annotations, data)
    assert len(coco_detection(images_dir, annotations, train=True)) == len(data["images"]) - 1
    val = coco_detection(images_dir, annotations, train=False, masks=True)
    assert len(val) == len(data["images"])
    _, target = val[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 48, 48)


def test_a_models_categories_define_the_labels(shapes) -> None:
    images_dir, annotations, data = shapes
    model = {3: "triangle", 1: "circle", 2: "square", 5: "hexagon"}
    val = coco_detection(images_dir, annotations, train=False, categories=model)
    assert val.categories == model
    _, target = val[0]
    order = {cat_id: label for label, cat_id in enumerate(model, start=1)}
    anns = [a for a in data["annotations"] if a["image_id"] == target["image_id"]]
    assert target["labels"].tolist() == [order[a["category_id"]] for a in anns]
    with pytest.raises(ValueError, match=r"category ids \[3\] that the model does not know"):
        coco_detection(images_dir, annotations, train=False, categories={1: "circle", 2: "square"})


_POP = object()
# (entry, field, new value or _POP, the error expected); the entry is "images" or "annotations" [0].
BAD_FIELDS = {
    "area": ("annotations", "area", "big", r"annotation 1 of image 1 has area 'big', expected a number"),
    "iscrowd": ("annotations", "iscrowd", 2, "has iscrowd 2, expected 0 or 1"),
    "nan-box": ("annotations", "bbox", [1, 2, float("nan"), 4], "expected .* finite numbers"),
    "category": (
        "annotations",
        "category_id",
        9,
        r"category_id 9, expected one of the categories \[1, 2, 3\]",
    ),
    "polygon": (
        "annotations",
        "segmentation",
        [[1, 2, 3, 4]],
        r"polygon \[1, 2, 3, 4\], expected .* 3\+ points",
    ),
    "rle-size": (
        "annotations",
        "segmentation",
        {"size": [9, 9], "counts": "x"},
        r"RLE of size \[9, 9\], expected .* \[48, 48\]",
    ),
    "no-segmentation": (
        "annotations",
        "segmentation",
        _POP,
        "has no segmentation, which a mask detector needs",
    ),
    "no-category": ("annotations", "category_id", _POP, "an entry lacks the field 'category_id'"),
    "width": ("images", "width", 0, r"image 1 has width, height \[0, 48\], expected positive integers"),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_every_field_is_checked_with_the_file_and_entry_named(shapes, tmp_path, case) -> None:
    images_dir, _, data = shapes
    key, field, value, message = BAD_FIELDS[case]
    if value is _POP:
        data[key][0].pop(field)
    else:
        data[key][0][field] = value
    bad = _write(tmp_path / "bad.json", data)
    with pytest.raises(ValueError, match=message) as error:
        coco_detection(images_dir, bad, train=False, masks=True)
    assert str(bad) in str(error.value) and len(str(error.value).splitlines()) == 1


def test_bad_files_name_the_file_and_what_was_expected(shapes, tmp_path) -> None:
    images_dir, annotations, data = shapes
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        coco_detection(images_dir, _write(tmp_path / "bad.json", "{'images': ["), train=True)
    (images_dir / data["images"][1]["file_name"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"missing from .*000002\.png"):
        coco_detection(images_dir, annotations, train=False)
    with pytest.raises(FileNotFoundError, match="annotations file"):
        coco_detection(images_dir, tmp_path / "nope.json", train=False)


def test_parse_coco_spec() -> None:
    assert parse_coco_spec("coco:a/b,c.json") == (Path("a/b"), Path("c.json"))
    with pytest.raises(ValueError, match="--val-data must be coco:IMAGES_DIR,ANNOTATIONS_JSON"):
        parse_coco_spec("voc:x", "--val-data")
