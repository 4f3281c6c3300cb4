"""Predictions as data: COCO results with the json's category ids, xywh boxes and RLE masks; image lists."""

import json

import pytest
import torch
from pycocotools import mask as mask_utils

from awconv.engine.detection.predict import coco_image_files, coco_results, draw_predictions, path_image_files


def test_coco_results_map_labels_back_to_category_ids() -> None:
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:7] = True
    masks[1, 4:, :2] = True
    detection = {
        "boxes": torch.tensor([[2.0, 1.0, 7.0, 3.0], [0.0, 4.0, 2.0, 6.0]]),
        "labels": torch.tensor([3, 1]),
        "scores": torch.tensor([0.9, 0.25]),
        "masks": masks,
    }
    results = coco_results(detection, 42, category_ids=[0, 7, 3])
    assert [{k: r[k] for k in ("image_id", "category_id", "bbox")} for r in results] == [
        {"image_id": 42, "category_id": 3, "bbox": [2.0, 1.0, 5.0, 2.0]},
        {"image_id": 42, "category_id": 0, "bbox": [0.0, 4.0, 2.0, 2.0]},
    ]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.25])
    for result, mask in zip(results, masks, strict=True):
        assert isinstance(result["segmentation"]["counts"], str)  # json-ready
        decoded = mask_utils.decode(
            {**result["segmentation"], "counts": result["segmentation"]["counts"].encode()}
        )
        assert (decoded == mask.numpy()).all()
    json.dumps(results)
    drawn = draw_predictions(torch.zeros(3, 6, 8), detection, ["a", "b", "c"], score_thresh=0.5)
    assert drawn.dtype == torch.uint8 and drawn[:, 1:3, 2:7].sum() > 0 and drawn[:, 5, 0].sum() == 0


def test_image_lists_from_a_json_or_from_paths(tmp_path) -> None:
    for name in ("a/x.png", "b/x.png", "c.png"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")
    listing = {"images": [{"id": 9, "file_name": "b/x.png"}, {"id": 4, "file_name": "a/x.png"}]}
    (tmp_path / "val.json").write_text(json.dumps(listing))
    files = coco_image_files(tmp_path / "images", tmp_path / "val.json")
    assert [(f.image_id, f.name) for f in files] == [(4, "a/x"), (9, "b/x")]  # id order
    only = coco_image_files(tmp_path / "images", tmp_path / "val.json", only=[tmp_path / "images/b/x.png"])
    assert [f.image_id for f in only] == [9]
    with pytest.raises(ValueError, match=r"c\.png is not listed in"):
        coco_image_files(tmp_path / "images", tmp_path / "val.json", only=[tmp_path / "images/c.png"])
    paths = path_image_files(
        [tmp_path / "images/a/x.png", tmp_path / "images/b/x.png", tmp_path / "images/a/x.png"]
    )
    assert [(f.image_id, f.name) for f in paths] == [("a/x.png", "a/x"), ("b/x.png", "b/x")]
    with pytest.raises(FileNotFoundError, match=r"nope\.png does not exist"):
        path_image_files([tmp_path / "nope.png"])
