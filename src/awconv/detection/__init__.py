"""Faster R-CNN with FPN on awconv ResNet backbones, assembled from torchvision parts."""

from awconv.detection.faster_rcnn import fasterrcnn, resnet_fpn_backbone
from awconv.detection.registry import BACKBONES, create_detector, list_detectors

__all__ = ["BACKBONES", "create_detector", "fasterrcnn", "list_detectors", "resnet_fpn_backbone"]
