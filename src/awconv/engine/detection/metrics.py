"""COCO evaluation that counts every image once: torchmetrics' ``MeanAveragePrecision`` (pycocotools).

Under DDP each process evaluates a shard of the validation set. A ``DistributedSampler`` pads the
shards to equal length by repeating images, and ``MeanAveragePrecision`` would count those images
twice (the same checkpoint gave AP 1.301 in one process and 1.457 in two on a 3-image set).
``CocoMeanAveragePrecision`` records each image's id beside its detections and, after torchmetrics
has gathered the processes' states, keeps one copy of every image, in ascending id order; so any
number of processes gives the single-process figures exactly (torchvision's references
de-duplicate by image id the same way, mmdetection drops the padded tail).

The figures are COCOeval's twelve (``METRIC_NAMES``), for boxes and, with masks, for masks
(``mask_AP``, ...), and AP per category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

__all__ = ["METRIC_NAMES", "CocoMeanAveragePrecision", "summarize_coco"]

# torchmetrics' keys -> the names logged (with a "val_" prefix), printed and written: COCOeval's
# summary, in its order (AP at IoU .50:.95, .50, .75, by area; AR at 1, 10, 100 detections, by area).
METRIC_NAMES = {
    "map": "AP",
    "map_50": "AP50",
    "map_75": "AP75",
    "map_small": "APs",
    "map_medium": "APm",
    "map_large": "APl",
    "mar_1": "AR1",
    "mar_10": "AR10",
    "mar_100": "AR100",
    "mar_small": "ARs",
    "mar_medium": "ARm",
    "mar_large": "ARl",
}
# The states torchmetrics keeps one entry per image in.
_PER_IMAGE_STATES = (
    "detection_box",
    "detection_mask",
    "detection_scores",
    "detection_labels",
    "groundtruth_box",
    "groundtruth_mask",
    "groundtruth_labels",
    "groundtruth_crowds",
    "groundtruth_area",
)


class CocoMeanAveragePrecision(MeanAveragePrecision):
    """``MeanAveragePrecision`` with per-class AP that counts each image id once, in id order.

    Args:
        masks: evaluate masks (``"segm"``) beside boxes.

    ``update(preds, targets)`` takes torchmetrics' inputs, boxes XYXY; every target also carries
    its ``image_id`` (an int).
    """

    def __init__(self, *, masks: bool = False) -> None:
        iou_type: tuple[Literal["bbox", "segm"], ...] = ("bbox", "segm") if masks else ("bbox",)
        super().__init__(box_format="xyxy", iou_type=iou_type, class_metrics=True, backend="pycocotools")
        self.add_state("image_ids", default=[], dist_reduce_fx=None)

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Any]]) -> None:
        super().update(preds, [{k: v for k, v in t.items() if k != "image_id"} for t in target])
        self.image_ids.extend(torch.tensor([int(t["image_id"])], device=self.device) for t in target)

    def compute(self) -> dict[str, Tensor]:
        """COCOeval over the gathered states, one copy of each image, in ascending id order."""
        first: dict[int, int] = {}
        for position, image_id in enumerate(int(i) for i in self.image_ids):
            first.setdefault(image_id, position)
        order = [first[image_id] for image_id in sorted(first)]
        for name in _PER_IMAGE_STATES:
            values = getattr(self, name)
            if len(values) == len(self.image_ids):
                setattr(self, name, [values[position] for position in order])
        self.image_ids = [self.image_ids[position] for position in order]
        return super().compute()


def summarize_coco(
    results: Mapping[str, Tensor], categories: Sequence[str], *, masks: bool
) -> dict[str, Any]:
    """torchmetrics' result -> the twelve figures, ``AP_per_class``, and the same with ``mask_`` for masks.

    Args:
        results: ``CocoMeanAveragePrecision.compute()``.
        categories: category names in label order (label 1 first).
        masks: the results hold mask figures too.

    Returns:
        ``{"AP": ..., ..., "ARl": ..., "AP_per_class": {name: AP}}`` (fractions; -1: no ground truth
        in that range or of that class) and, with ``masks``, the same keys prefixed ``mask_``.
    """
    summary: dict[str, Any] = {}
    classes = [int(label) for label in results["classes"]]
    for iou_type, prefix in (("bbox", ""), ("segm", "mask_"))[: 2 if masks else 1]:
        source = f"{iou_type}_" if masks else ""
        summary.update(
            {f"{prefix}{name}": float(results[f"{source}{key}"]) for key, name in METRIC_NAMES.items()}
        )
        per_class = results[f"{source}map_per_class"].reshape(-1).tolist()
        found = dict(zip(classes, per_class, strict=False))
        summary[f"{prefix}AP_per_class"] = {
            name: found.get(label, -1.0) for label, name in enumerate(categories, start=1)
        }
    return summary
