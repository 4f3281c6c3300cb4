"""COCO-format detection data through ``torchvision.datasets.CocoDetection`` and transforms v2.

Samples are ``(image, target)`` with ``image`` a (3, H, W) float tensor in [0, 1] and ``target``
a dict of ``boxes`` (K, 4) XYXY pixels, ``labels`` (K,) category ids, ``image_id``, ``iscrowd``
(K,) and ``area`` (K,), the format of torchvision's detection models and of torchmetrics'
``MeanAveragePrecision``. As in torchvision's references, training drops images without a usable
box and drops crowd boxes; evaluation keeps every image at its original size (the detector resizes
internally and maps its boxes back), so COCO's small/medium/large areas are the official ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

__all__ = ["coco_detection", "collate_detection", "detection_transforms", "parse_coco_spec"]

_logger = logging.getLogger(__name__)

_TARGET_KEYS = {"boxes", "labels", "image_id", "iscrowd", "area"}
# A training image needs a non-crowd box larger than this many pixels on both sides.
_MIN_TRAIN_BOX = 1.0


def parse_coco_spec(spec: str, argument: str = "--data") -> tuple[Path, Path]:
    """Parses ``coco:IMAGES_DIR,ANNOTATIONS_JSON`` into two paths."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(",")
    if kind != "coco" or len(parts) != 2 or not all(parts):
        raise ValueError(f"{argument} must be coco:IMAGES_DIR,ANNOTATIONS_JSON, got {spec!r}")
    return Path(parts[0]), Path(parts[1])


def _standard_target(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Makes ``iscrowd`` and ``area`` tensors and gives images without annotations empty ones."""
    if "boxes" not in target:
        height, width = TF.get_size(image)
        empty = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(height, width))
        return image, {
            **target,
            "boxes": empty,
            "labels": torch.zeros(0, dtype=torch.int64),
            "iscrowd": torch.zeros(0, dtype=torch.int64),
            "area": torch.zeros(0),
        }
    iscrowd = torch.as_tensor(target["iscrowd"], dtype=torch.int64)
    return image, {**target, "iscrowd": iscrowd, "area": torch.as_tensor(target["area"], dtype=torch.float32)}


def _drop_crowd(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    keep = target["iscrowd"] == 0
    boxes = tv_tensors.wrap(target["boxes"][keep], like=target["boxes"])
    return image, {
        **target,
        "boxes": boxes,
        **{key: target[key][keep] for key in ("labels", "iscrowd", "area")},
    }


def _sanitized(sample: tuple[Any, dict[str, Tensor]]) -> tuple[Tensor, ...]:
    return tuple(sample[1][key] for key in ("labels", "iscrowd", "area"))


def detection_transforms(*, train: bool, min_size: int, max_size: int, flip_prob: float = 0.5) -> T.Compose:
    """The joint image/target pipeline.

    Args:
        train: add the horizontal flip, the resize to ``min_size``, the clipping of boxes to the
            image and the removal of crowd and degenerate boxes; evaluation only converts the image.
        min_size: the shorter side after resizing (capped so the longer side is at most ``max_size``).
        max_size: the longer side's cap.
        flip_prob: probability of the horizontal flip.
    """
    steps: list[Any] = [_standard_target, T.ToImage()]
    if train:
        resize = (
            T.Resize(min_size, max_size=max_size)
            if max_size > min_size
            else T.Resize(None, max_size=max_size)
        )
        steps += [_drop_crowd, T.RandomHorizontalFlip(flip_prob), resize]
    steps.append(T.ToDtype(torch.float32, scale=True))
    if train:
        steps += [T.ClampBoundingBoxes(), T.SanitizeBoundingBoxes(labels_getter=_sanitized)]
    return T.Compose(steps)


def _load(images_dir: Path, annotations: Path) -> CocoDetection:
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
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{annotations} is not a COCO detection file (expected 'images', 'annotations' and "
            f"'categories' lists of objects with ids): {type(error).__name__} {error}"
        ) from None


def _check_entries(annotations: Path, key: str, entries: list[Any], fields: tuple[str, ...]) -> None:
    """Every entry of the json's ``key`` list is an object with ``fields`` and a unique ``id``."""
    for index, entry in enumerate(entries):
        missing = [name for name in fields if not isinstance(entry, dict) or name not in entry]
        if missing:
            raise ValueError(f"{annotations}: {key}[{index}] lacks {missing}, expected fields {list(fields)}")
    repeated = sorted(i for i, count in Counter(entry["id"] for entry in entries).items() if count > 1)
    if repeated:
        raise ValueError(f"{annotations}: {key} ids {repeated[:5]} occur more than once, expected unique ids")


def _outside(ann: dict[str, Any], image: dict[str, Any]) -> bool:
    """Whether a box reaches beyond its image's ``width`` x ``height`` (when the json gives them)."""
    x, y, w, h = ann["bbox"]
    width, height = image.get("width"), image.get("height")
    if not isinstance(width, (int, float)) or not isinstance(height, (int, float)):
        return False
    return x < 0 or y < 0 or x + w > width or y + h > height


def _validate(dataset: CocoDetection, images_dir: Path, annotations: Path) -> None:
    """Checks what training would otherwise trip over much later, naming the file and the entry.

    Boxes that reach beyond their image are not an error (COCO itself has a few): they are counted
    in a warning, clipped to the image in training and kept as given for evaluation.
    """
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
    outside = []
    for ann in coco.dataset["annotations"]:
        where = f"{annotations}: annotation {ann.get('id')} of image {ann['image_id']}"
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise ValueError(f"{where} has bbox {bbox!r}, expected [x, y, width, height]")
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(f"{where} has bbox {bbox}, expected width > 0 and height > 0")
        if ann.get("category_id") not in coco.cats:
            raise ValueError(
                f"{where} has category_id {ann.get('category_id')!r}, expected one of the "
                f"categories {sorted(coco.cats)}"
            )
        if ann["image_id"] not in coco.imgs:
            raise ValueError(f"{where} refers to an image id missing from 'images'")
        if _outside(ann, coco.imgs[ann["image_id"]]):
            outside.append(ann)
    if outside:
        first = outside[0]
        _logger.warning(
            "%s: %d box(es) reach beyond their image, e.g. annotation %s bbox %s in image %s (%s x %s); "
            "training clips them to the image",
            annotations,
            len(outside),
            first["id"],
            first["bbox"],
            coco.imgs[first["image_id"]]["file_name"],
            coco.imgs[first["image_id"]].get("width"),
            coco.imgs[first["image_id"]].get("height"),
        )
    missing = [
        img["file_name"] for img in coco.imgs.values() if not (images_dir / img["file_name"]).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {annotations} are missing from {images_dir}, "
            f"e.g. {images_dir / missing[0]}"
        )


def _has_training_box(coco: Any, image_id: int) -> bool:
    return any(
        not ann.get("iscrowd", 0) and ann["bbox"][2] > _MIN_TRAIN_BOX and ann["bbox"][3] > _MIN_TRAIN_BOX
        for ann in coco.imgToAnns[image_id]
    )


def coco_detection(
    images_dir: str | Path,
    annotations: str | Path,
    *,
    train: bool,
    min_size: int = 800,
    max_size: int = 1333,
    flip_prob: float = 0.5,
) -> torch.utils.data.Dataset:
    """A validated COCO-format detection data set for torchvision's detectors.

    Args:
        images_dir: the folder the json's ``file_name`` entries are relative to.
        annotations: the COCO instances json.
        train: training pipeline (flip, resize, images without boxes removed) or evaluation.
        min_size: shorter side for training images.
        max_size: longer side's cap for training images.
        flip_prob: horizontal flip probability in training.

    Returns:
        A data set of ``(image (3, H, W), target)``; its ``.categories`` maps ids to names.

    Raises:
        FileNotFoundError: the json, the folder or an image listed in the json is missing.
        ValueError: malformed json, an entry without its required fields, a repeated id, a box
            without positive width and height, an unknown category.
    """
    images_dir, annotations = Path(images_dir), Path(annotations)
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be at least min_size ({min_size})")
    base = _load(images_dir, annotations)
    _validate(base, images_dir, annotations)
    if train:
        base.ids = [image_id for image_id in base.ids if _has_training_box(base.coco, image_id)]
        if not base.ids:
            raise ValueError(f"{annotations} has no image with a usable box for training")
    base.transforms = detection_transforms(
        train=train, min_size=min_size, max_size=max_size, flip_prob=flip_prob
    )
    dataset = wrap_dataset_for_transforms_v2(base, target_keys=_TARGET_KEYS)
    dataset.categories = {cat_id: cat["name"] for cat_id, cat in sorted(base.coco.cats.items())}
    return dataset


def collate_detection(
    batch: list[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Keeps images and targets as lists: detection images differ in size."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
