"""Reading a COCO instances json as people have them: every field checked, the usual gaps filled.

``load_coco`` returns torchvision's ``CocoDetection`` over the file after checking every entry
the detectors will read, so that a bad file stops before a model is built, with the file and the
entry named. What torchvision's references and mmdetection tolerate is tolerated here too:

- a box of zero (or negative) width or height is dropped, with one warning counting them (the
  references drop such boxes when they convert targets, mmdetection when it parses annotations);
- an annotation without ``area`` gets the area of its box, one without ``iscrowd`` gets 0;
- an image without ``width`` and ``height`` gets them from its file's header;
- category ids may take any integer value, 0 included (``coco_detection`` maps them to labels);
- boxes reaching beyond their image are counted in a warning (training clips them).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets import CocoDetection

__all__ = ["load_coco"]

_logger = logging.getLogger(__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read(images_dir: Path, annotations: Path) -> CocoDetection:
    """``CocoDetection`` with pycocotools' errors turned into ones that name the file."""
    if not annotations.is_file():
        raise FileNotFoundError(f"annotations file {annotations} does not exist")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return CocoDetection(str(images_dir), str(annotations))
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotations} is not valid JSON: {error}") from None
    except KeyError as error:
        raise ValueError(
            f"{annotations} is not a COCO detection file: an entry lacks the field {error} (expected "
            "'images' with id and file_name, 'annotations' with id, image_id, category_id and bbox, "
            "'categories' with id and name)"
        ) from None
    except (TypeError, AttributeError) as error:
        raise ValueError(
            f"{annotations} is not a COCO detection file (expected 'images', 'annotations' and "
            f"'categories' lists of objects with ids): {type(error).__name__} {error}"
        ) from None


def _check_entries(annotations: Path, key: str, entries: list[Any], fields: tuple[str, ...]) -> None:
    """Every entry of the json's ``key`` list is an object with ``fields`` and a unique integer ``id``."""
    for index, entry in enumerate(entries):
        missing = [name for name in fields if not isinstance(entry, dict) or name not in entry]
        if missing:
            raise ValueError(f"{annotations}: {key}[{index}] lacks {missing}, expected fields {list(fields)}")
        if not _is_int(entry["id"]):
            raise ValueError(f"{annotations}: {key}[{index}] has id {entry['id']!r}, expected an integer")
    repeated = sorted(i for i, count in Counter(entry["id"] for entry in entries).items() if count > 1)
    if repeated:
        raise ValueError(f"{annotations}: {key} ids {repeated[:5]} occur more than once, expected unique ids")


def _check_segmentation(where: str, segmentation: Any, image: dict[str, Any]) -> None:
    """A polygon list (each with 3+ points) or an RLE dict of the image's size."""
    if isinstance(segmentation, list) and segmentation:
        for polygon in segmentation:
            if (
                not isinstance(polygon, list)
                or len(polygon) < 6
                or len(polygon) % 2
                or not all(_is_number(v) for v in polygon)
            ):
                raise ValueError(
                    f"{where} has a polygon {str(polygon)[:60]}, "
                    "expected [x1, y1, x2, y2, ...] with 3+ points"
                )
        return
    if isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys():
        if segmentation["size"] != [image["height"], image["width"]]:
            raise ValueError(
                f"{where} has an RLE of size {segmentation['size']}, expected the image's "
                f"[height, width] {[image['height'], image['width']]}"
            )
        if isinstance(segmentation["counts"], (str, list)):
            return
    raise ValueError(
        f"{where} has segmentation {str(segmentation)[:60]!r}, expected polygons [[x1, y1, ...], ...] "
        "or an RLE {'size': [height, width], 'counts': ...}"
    )


def _check_annotation(where: str, ann: dict[str, Any], coco: Any, masks: bool) -> None:
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ValueError(f"{where} has bbox {bbox!r}, expected [x, y, width, height] of finite numbers")
    if ann["image_id"] not in coco.imgs:
        raise ValueError(f"{where} refers to an image id missing from 'images'")
    if ann["category_id"] not in coco.cats:
        raise ValueError(
            f"{where} has category_id {ann['category_id']!r}, "
            f"expected one of the categories {sorted(coco.cats)}"
        )
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        raise ValueError(f"{where} has area {ann['area']!r}, expected a number >= 0")
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        raise ValueError(f"{where} has iscrowd {ann['iscrowd']!r}, expected 0 or 1")
    if masks:
        if "segmentation" not in ann:
            raise ValueError(f"{where} has no segmentation, which a mask detector needs")
        _check_segmentation(where, ann["segmentation"], coco.imgs[ann["image_id"]])


def _fill_image_sizes(coco: Any, images_dir: Path, annotations: Path) -> None:
    """Checks ``width``/``height`` where given; reads them from the file's header where not."""
    for image in coco.dataset["images"]:
        given = [image.get("width"), image.get("height")]
        if given == [None, None]:
            with Image.open(images_dir / image["file_name"]) as file:
                image["width"], image["height"] = file.size
        elif not all(_is_int(v) and v > 0 for v in given):
            raise ValueError(
                f"{annotations}: image {image['id']} has width, height {given}, expected positive integers"
            )


def _warn_first(annotations: Path, what: str, anns: list[dict[str, Any]], coco: Any, then: str) -> None:
    first = anns[0]
    image = coco.imgs[first["image_id"]]
    _logger.warning(
        "%s: %d box(es) %s, e.g. annotation %s bbox %s in image %s (%s x %s); %s",
        annotations,
        len(anns),
        what,
        first["id"],
        first["bbox"],
        image["file_name"],
        image["width"],
        image["height"],
        then,
    )


def _outside(ann: dict[str, Any], image: dict[str, Any]) -> bool:
    x, y, w, h = ann["bbox"]
    return x < 0 or y < 0 or x + w > image["width"] or y + h > image["height"]


def load_coco(images_dir: str | Path, annotations: str | Path, *, masks: bool = False) -> CocoDetection:
    """Reads and checks a COCO instances json; fills what may be missing, drops degenerate boxes.

    Args:
        images_dir: the folder the json's ``file_name`` entries are relative to (sub-folders allowed).
        annotations: the COCO instances json.
        masks: also check every annotation's ``segmentation`` (polygons or RLE), for mask detectors.

    Returns:
        ``CocoDetection`` whose ``coco`` index holds the checked, completed annotations.

    Raises:
        FileNotFoundError: the json, the folder or an image listed in the json is missing.
        ValueError: malformed json, an entry without a required field or with a value of the wrong
            kind, a repeated id, an unknown category or image, a bad segmentation; one line
            naming the file and the entry.
    """
    images_dir, annotations = Path(images_dir), Path(annotations)
    dataset = _read(images_dir, annotations)
    coco = dataset.coco
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.dataset.get(key), list):
            raise ValueError(
                f"{annotations} must hold a list {key!r}, got {type(coco.dataset.get(key)).__name__}"
            )
    _check_entries(annotations, "images", coco.dataset["images"], ("id", "file_name"))
    _check_entries(annotations, "annotations", coco.dataset["annotations"], ("id", "image_id", "bbox"))
    _check_entries(annotations, "categories", coco.dataset["categories"], ("id", "name"))
    if not coco.cats:
        raise ValueError(f"{annotations} lists no categories")
    missing = [
        img["file_name"] for img in coco.dataset["images"] if not (images_dir / img["file_name"]).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {annotations} are missing from {images_dir}, "
            f"e.g. {images_dir / missing[0]}"
        )
    _fill_image_sizes(coco, images_dir, annotations)
    kept, degenerate, outside = [], [], []
    for ann in coco.dataset["annotations"]:
        _check_annotation(
            f"{annotations}: annotation {ann['id']} of image {ann['image_id']}", ann, coco, masks
        )
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        if ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0:
            degenerate.append(ann)
            continue
        kept.append(ann)
        if _outside(ann, coco.imgs[ann["image_id"]]):
            outside.append(ann)
    if degenerate:
        _warn_first(
            annotations, "of zero width or height dropped", degenerate, coco, "as torchvision and mmdet do"
        )
        coco.dataset["annotations"] = kept
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    if outside:
        _warn_first(
            annotations, "reach beyond their image", outside, coco, "training clips them to the image"
        )
    return dataset
