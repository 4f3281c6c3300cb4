"""Detector names: ``fasterrcnn_{backbone}_fpn`` for every registered ResNet variant.

``create_detector("fasterrcnn_aw_resnet50_fpn", num_classes=4)`` is
``fasterrcnn(backbone="aw_resnet50", num_classes=4)``; the command line picks detectors by name.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

from torchvision.models.detection import FasterRCNN

from awconv.detection.faster_rcnn import fasterrcnn

__all__ = ["BACKBONES", "create_detector", "list_detectors"]

BACKBONES: tuple[str, ...] = tuple(
    f"{family}{depth}"
    for family in ("resnet", "seresnet", "cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
    for depth in (18, 34, 50, 101, 152)
)
_DETECTORS: dict[str, Callable[..., FasterRCNN]] = {
    f"fasterrcnn_{backbone}_fpn": functools.partial(fasterrcnn, backbone) for backbone in BACKBONES
}


def list_detectors() -> list[str]:
    """The registered detector names, sorted."""
    return sorted(_DETECTORS)


def create_detector(name: str, **kwargs: Any) -> FasterRCNN:
    """Builds the detector registered as ``name`` with ``fasterrcnn``'s keyword arguments."""
    if name not in _DETECTORS:
        close = difflib.get_close_matches(name, _DETECTORS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {list_detectors()}"
        raise ValueError(f"unknown detector {name!r}, expected fasterrcnn_{{backbone}}_fpn{hint}")
    return _DETECTORS[name](**kwargs)
