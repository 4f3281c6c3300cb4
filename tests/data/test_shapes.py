"""The synthetic shapes set: valid COCO json, deterministic, argument checks."""

import json

import pytest
from pycocotools.coco import COCO

from awconv.cli import main
from awconv.data.shapes import SHAPE_CLASSES, make_shapes


def test_generated_json_passes_pycocotools_and_images_exist(tmp_path) -> None:
    splits = make_shapes(tmp_path, images=10, size=48, seed=3)
    assert set(splits) == {"train", "val"}
    total = 0
    for images_dir, annotations in splits.values():
        coco = COCO(str(annotations))
        total += len(coco.imgs)
        assert sorted(c["name"] for c in coco.cats.values()) == sorted(SHAPE_CLASSES)
        assert coco.anns and all(len(coco.imgToAnns[i]) >= 1 for i in coco.imgs)
        for ann in coco.anns.values():
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 48 and y + h <= 48
        assert all((images_dir / img["file_name"]).is_file() for img in coco.imgs.values())
    assert total == 10


def test_same_seed_same_files(tmp_path) -> None:
    first = make_shapes(tmp_path / "a", images=4, size=32, seed=7)["train"][1].read_text()
    second = make_shapes(tmp_path / "b", images=4, size=32, seed=7)["train"][1].read_text()
    assert json.loads(first) == json.loads(second)


def test_cli_and_bad_arguments(tmp_path, capsys) -> None:
    assert main(["make-shapes", str(tmp_path), "--images", "4", "--size", "32"]) == 0
    assert "coco:" in capsys.readouterr().out
    assert main(["make-shapes", str(tmp_path), "--images", "1"]) == 2
    assert "images must be an int >= 2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="size must be"):
        make_shapes(tmp_path, size=8)
