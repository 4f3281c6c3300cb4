"""COCO-format detection data through ``torchvision.datasets.CocoDetection`` and transforms v2.

Samples are ``(image, target)`` with ``image`` a (3, H, W) float tensor in [0, 1] and ``target``
a dict of ``boxes`` (K, 4) XYXY pixels, ``labels`` (K,), ``image_id``, ``iscrowd`` (K,),
``area`` (K,) and, for mask detectors, ``masks`` (K, H, W) uint8 decoded from polygons or RLE by
pycocotools: the format of torchvision's detection models and of torchmetrics'
``MeanAveragePrecision``. Labels are contiguous: the category ids, whatever their values (0
included), sorted, are labels 1..K; label 0 is the background.

As in torchvision's references, the images keep their size (the detector resizes them, to one of
its ``min_size`` values at random in training), training drops images without a usable box, drops
crowd boxes and flips horizontally; evaluation keeps every image, so COCO's small/medium/large
areas are the official ones. ``awconv.data.coco_file`` checks the json first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.datasets import wrap_dataset_for_transforms_v2
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from awconv.data.coco_file import load_coco

__all__ = ["aspect_ratios", "coco_detection", "collate_detection", "detection_transforms", "parse_coco_spec"]

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


class _StandardTarget:
    """Category ids to labels; ``iscrowd`` and ``area`` as tensors; empty targets for images without any."""

    def __init__(self, label_of: Mapping[int, int], masks: bool) -> None:
        self.label_of = dict(label_of)
        self.masks = masks

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if "boxes" not in target:
            height, width = TF.get_size(image)
            empty = {
                "boxes": tv_tensors.BoundingBoxes(
                    torch.zeros(0, 4), format="XYXY", canvas_size=(height, width)
                ),
                "labels": torch.zeros(0, dtype=torch.int64),
                "iscrowd": torch.zeros(0, dtype=torch.int64),
                "area": torch.zeros(0),
            }
            if self.masks:
                empty["masks"] = tv_tensors.Mask(torch.zeros(0, height, width, dtype=torch.uint8))
            return image, {**target, **empty}
        labels = torch.tensor([self.label_of[int(c)] for c in target["labels"]], dtype=torch.int64)
        return image, {
            **target,
            "labels": labels,
            "iscrowd": torch.as_tensor(target["iscrowd"], dtype=torch.int64),
            "area": torch.as_tensor(target["area"], dtype=torch.float32),
        }


def _drop_crowd(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    keep = target["iscrowd"] == 0
    kept = {key: target[key][keep] for key in ("labels", "iscrowd", "area")}
    kept["boxes"] = tv_tensors.wrap(target["boxes"][keep], like=target["boxes"])
    if "masks" in target:
        kept["masks"] = tv_tensors.wrap(target["masks"][keep], like=target["masks"])
    return image, {**target, **kept}


def _sanitized(sample: tuple[Any, dict[str, Tensor]]) -> tuple[Tensor, ...]:
    """What ``SanitizeBoundingBoxes`` removes with a box (masks it finds by their type)."""
    return tuple(sample[1][key] for key in ("labels", "iscrowd", "area"))


def detection_transforms(
    *, train: bool, label_of: Mapping[int, int], masks: bool = False, flip_prob: float = 0.5
) -> T.Compose:
    """The joint image/target pipeline.

    Args:
        train: add the removal of crowd boxes, the horizontal flip, the clipping of boxes to the
            image and the removal of boxes (and their masks) under a pixel; evaluation only converts.
        label_of: category id -> label.
        masks: targets carry ``masks``.
        flip_prob: probability of the horizontal flip.
    """
    steps: list[Any] = [_StandardTarget(label_of, masks), T.ToImage()]
    if train:
        steps += [_drop_crowd, T.RandomHorizontalFlip(flip_prob)]
    steps.append(T.ToDtype(torch.float32, scale=True))
    if train:
        steps += [T.ClampBoundingBoxes(), T.SanitizeBoundingBoxes(labels_getter=_sanitized)]
    return T.Compose(steps)


def _has_training_box(coco: Any, image_id: int) -> bool:
    return any(
        not ann["iscrowd"] and ann["bbox"][2] > _MIN_TRAIN_BOX and ann["bbox"][3] > _MIN_TRAIN_BOX
        for ann in coco.imgToAnns[image_id]
    )


def coco_detection(
    images_dir: str | Path,
    annotations: str | Path,
    *,
    train: bool,
    categories: Mapping[int, str] | None = None,
    masks: bool = False,
    flip_prob: float = 0.5,
) -> torch.utils.data.Dataset:
    """A checked COCO-format data set for torchvision's detectors.

    Args:
        images_dir: the folder the json's ``file_name`` entries are relative to.
        annotations: the COCO instances json.
        train: training pipeline (crowd boxes and images without boxes removed, flips) or evaluation.
        categories: category id -> name in label order (label 1 first), a trained model's; ``None``:
            the json's categories sorted by id. The json's categories must be among them.
        masks: load instance masks (polygons or RLE) as ``target["masks"]``, for Mask R-CNN.
        flip_prob: horizontal flip probability in training.

    Returns:
        A data set of ``(image (3, H, W), target)``; ``.categories`` maps category ids to names in
        label order; ``.coco`` is the checked pycocotools index and ``.ids`` the samples' image ids.

    Raises:
        FileNotFoundError: the json, the folder or an image listed in the json is missing.
        ValueError: what ``awconv.data.coco_file.load_coco`` rejects, a category the model does not
            know, no usable training box.
    """
    base = load_coco(images_dir, annotations, masks=masks)
    coco = base.coco
    if categories is None:
        categories = {cat_id: coco.cats[cat_id]["name"] for cat_id in sorted(coco.cats)}
    unknown = sorted(set(coco.cats) - set(categories))
    if unknown:
        raise ValueError(
            f"{annotations} has category ids {unknown[:10]} that the model does not know, expected "
            f"ids among {list(categories)[:10]}"
        )
    if train:
        base.ids = [image_id for image_id in base.ids if _has_training_box(coco, image_id)]
        if not base.ids:
            raise ValueError(f"{annotations} has no image with a usable box for training")
    label_of = {cat_id: label for label, cat_id in enumerate(categories, start=1)}
    base.transforms = detection_transforms(train=train, label_of=label_of, masks=masks, flip_prob=flip_prob)
    dataset = wrap_dataset_for_transforms_v2(base, target_keys=_TARGET_KEYS | ({"masks"} if masks else set()))
    dataset.categories = dict(categories)
    return dataset


def aspect_ratios(dataset: torch.utils.data.Dataset) -> list[float]:
    """Height / width of every sample of a ``coco_detection`` set, from the json (no image is read)."""
    return [
        dataset.coco.imgs[image_id]["height"] / dataset.coco.imgs[image_id]["width"]
        for image_id in dataset.ids
    ]


def collate_detection(
    batch: list[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Keeps images and targets as lists: detection images differ in size."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
