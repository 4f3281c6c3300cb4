"""Faster R-CNN and Mask R-CNN with FPN on awconv ResNet backbones, assembled from torchvision parts."""

from awconv.detection.backbone import create_fpn_backbone, resnet_fpn_backbone
from awconv.detection.faster_rcnn import fasterrcnn
from awconv.detection.mask_rcnn import maskrcnn
from awconv.detection.registry import BACKBONES, create_detector, has_masks, list_detectors

__all__ = [
    "BACKBONES",
    "create_detector",
    "create_fpn_backbone",
    "fasterrcnn",
    "has_masks",
    "list_detectors",
    "maskrcnn",
    "resnet_fpn_backbone",
]
