"""Detector names: ``fasterrcnn_{backbone}_fpn`` and ``maskrcnn_{backbone}_fpn`` for every ResNet variant.

``create_detector("maskrcnn_aw_resnet50_fpn", num_classes=4)`` is
``maskrcnn(backbone="aw_resnet50", num_classes=4)``, as torchvision names its
``maskrcnn_resnet50_fpn``; the command line picks detectors by name.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

from torchvision.models.detection import FasterRCNN

from awconv.detection.faster_rcnn import fasterrcnn
from awconv.detection.mask_rcnn import maskrcnn

__all__ = ["BACKBONES", "create_detector", "has_masks", "list_detectors"]

BACKBONES: tuple[str, ...] = tuple(
    f"{family}{depth}"
    for family in ("resnet", "seresnet", "cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
    for depth in (18, 34, 50, 101, 152)
)
_BUILDERS: dict[str, Callable[..., FasterRCNN]] = {"fasterrcnn": fasterrcnn, "maskrcnn": maskrcnn}
_DETECTORS: dict[str, Callable[..., FasterRCNN]] = {
    f"{kind}_{backbone}_fpn": functools.partial(builder, backbone)
    for kind, builder in _BUILDERS.items()
    for backbone in BACKBONES
}


def list_detectors() -> list[str]:
    """The registered detector names, sorted."""
    return sorted(_DETECTORS)


def _check_name(name: str) -> None:
    if name not in _DETECTORS:
        close = difflib.get_close_matches(name, _DETECTORS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {list_detectors()}"
        raise ValueError(
            f"unknown detector {name!r}, expected fasterrcnn_{{backbone}}_fpn or "
            f"maskrcnn_{{backbone}}_fpn{hint}"
        )


def has_masks(name: str) -> bool:
    """Whether the detector registered as ``name`` predicts instance masks (Mask R-CNN)."""
    _check_name(name)
    return name.startswith("maskrcnn_")


def create_detector(name: str, **kwargs: Any) -> FasterRCNN:
    """Builds the detector registered as ``name`` with ``fasterrcnn``'s (or ``maskrcnn``'s) arguments."""
    _check_name(name)
    return _DETECTORS[name](**kwargs)
