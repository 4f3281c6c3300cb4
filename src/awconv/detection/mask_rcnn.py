"""Mask R-CNN with a feature pyramid on any awconv ResNet backbone.

He et al., "Mask R-CNN" (ICCV 2017): Faster R-CNN plus a mask branch (RoI Align to 14x14, four
3x3 convolutions, a 2x deconvolution and a per-class 28x28 mask), assembled from
``awconv.detection.backbone`` and torchvision's ``MaskRCNN`` exactly as torchvision's
``maskrcnn_resnet50_fpn`` does. ODConv and KernelWarehouse report Mask R-CNN results with their
dynamic-convolution backbones; this puts AW backbones in the same place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torchvision.models.detection import MaskRCNN

from awconv.detection.backbone import create_fpn_backbone
from awconv.detection.faster_rcnn import check_detector_arguments

__all__ = ["maskrcnn"]


def maskrcnn(
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
) -> MaskRCNN:
    """Builds Mask R-CNN with FPN on a ResNet variant (no weights are downloaded).

    Takes ``awconv.detection.fasterrcnn``'s arguments; ``detector_kwargs`` go to torchvision's
    ``MaskRCNN`` (``box_score_thresh``, ``mask_roi_pool``, ...).

    Returns:
        A ``MaskRCNN``: in training mode ``model(images, targets)``, with ``targets[i]["masks"]``
        (K, H, W) uint8, returns the loss dict (``loss_mask`` beside Faster R-CNN's four); in eval
        mode ``model(images)`` returns per image ``boxes`` (K, 4), ``labels`` (K,), ``scores``
        (K,) and ``masks`` (K, 1, H, W) probabilities in [0, 1].
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
    return MaskRCNN(
        features, num_classes=num_classes, min_size=sizes, max_size=max_size, **(detector_kwargs or {})
    )
