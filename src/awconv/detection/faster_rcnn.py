"""Faster R-CNN with a feature pyramid on any awconv ResNet backbone.

Ren et al., "Faster R-CNN" (NeurIPS 2015), assembled from ``awconv.detection.backbone`` and
torchvision's ``FasterRCNN`` exactly as torchvision's ``fasterrcnn_resnet50_fpn`` does: anchors,
RoI pooling, NMS and the image transform are torchvision's. Only the ResNet differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN

from awconv.detection.backbone import create_fpn_backbone

__all__ = ["check_detector_arguments", "fasterrcnn"]


def check_detector_arguments(
    num_classes: int, min_size: int | Sequence[int], max_size: int
) -> tuple[int, ...]:
    """Checks the arguments every detector shares; returns ``min_size`` as a tuple.

    A tuple of several sizes is torchvision's multi-scale training: ``GeneralizedRCNNTransform``
    resizes each training image's shorter side to one of them at random and evaluates at the last.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background + classes), got {num_classes!r}")
    sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"min_size must be a positive int or a sequence of them, got {min_size!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < max(sizes):
        raise ValueError(f"max_size must be an int >= min_size ({max(sizes)}), got {max_size!r}")
    return sizes


def fasterrcnn(
    backbone: str | nn.Module = "aw_resnet50",
    num_classes: int = 91,
    trainable_layers: int = 3,
    pretrained_backbone: str | Path | None = None,
    *,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    freeze: bool | None = None,
    train_generators: bool = True,
    detector_kwargs: Mapping[str, Any] | None = None,
    **model_kwargs: Any,
) -> FasterRCNN:
    """Builds Faster R-CNN with FPN on a ResNet variant (no weights are downloaded).

    Args:
        backbone: a timm model name (``"resnet50"``, ``"aw_seresnet101"``, ...; depth 18-152) or
            a ResNet module with torchvision attribute names and timm's ``feature_info``.
        num_classes: classes including background.
        trainable_layers: in a frozen backbone, the stages that train, counted from ``layer4``
            (0-5; 3 as torchvision).
        pretrained_backbone: plain ResNet weights loaded through ``awconv.load_pretrained`` before
            freezing (only with a backbone name).
        min_size: the shorter image side the detector resizes to; several (``(480, 512, ..., 800)``)
            for multi-scale training, the last one for evaluation.
        max_size: the longer side's cap.
        freeze: FrozenBatchNorm2d and ``trainable_layers``; default (``None``): when
            ``pretrained_backbone`` is given (see ``awconv.detection.backbone``).
        train_generators: keep AW attention generators trainable inside frozen stages.
        detector_kwargs: further ``torchvision.models.detection.FasterRCNN`` options
            (``box_score_thresh``, ``rpn_batch_size_per_image``, ...).
        **model_kwargs: options of the backbone's model function (``generator``, ``rank``,
            ``reduction``, ``gate``, ``pool`` for AW variants).

    Returns:
        A ``FasterRCNN``: in training mode ``model(images, targets)`` returns the loss dict, in eval
        mode ``model(images)`` returns per image ``{"boxes": (K, 4), "labels": (K,), "scores": (K,)}``;
        images are a list of (3, H, W) float tensors in [0, 1], of any sizes.
    """
    sizes = check_detector_arguments(num_classes, min_size, max_size)
    features = create_fpn_backbone(
        backbone,
        trainable_layers=trainable_layers,
        pretrained_backbone=pretrained_backbone,
        freeze=freeze,
        train_generators=train_generators,
        **model_kwargs,
    )
    return FasterRCNN(
        features, num_classes=num_classes, min_size=sizes, max_size=max_size, **(detector_kwargs or {})
    )
