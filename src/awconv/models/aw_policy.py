"""Where AW-convolution goes in a ResNet: every k×k convolution of the residual blocks.

Paper: Zhu et al., "An Attention Module for Convolutional Neural Networks" (arXiv 2108.08205).
Both 3×3 convolutions of a basic block and the 3×3 convolution of a bottleneck become
``AWConv2d``; the stem, the 1×1 convolutions, the shortcut projections and the convolutions inside
SE/CBAM modules stay plain (``docs/method.md``, section 4). The model argument ``aw_stages``
limits AW to some stages, e.g. ``aw_stages=[3, 4]`` for the last two stages of an ImageNet ResNet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from awconv.convert import convert

__all__ = ["AW_KWARGS", "convert_blocks", "is_block_conv", "split_aw_kwargs"]

# The options an ``aw_*`` model accepts through ``timm.create_model``: ``AWConv2d``'s, and
# ``aw_stages``, the 1-based stages (``layer<k>``) whose blocks get AW (None: all).
AW_KWARGS = ("reduction", "min_hidden", "generator", "rank", "gate", "pool", "impl", "aw_stages")

# ``layer<stage>.<block>.conv<k>``: a convolution of a residual block's main branch.
_BLOCK_CONV = re.compile(r"layer(\d+)\.\d+\.conv\d+")


def is_block_conv(name: str, conv: nn.Conv2d, stages: Sequence[int] | None = None) -> bool:
    """True for a k×k (k > 1) convolution of a residual block's main branch in ``stages`` (None: any).

    CBAM's 7×7 spatial-attention convolution (``layerS.B.se.spatial...``) and shortcut
    projections (``layerS.B.downsample.0``) do not match the name pattern and stay plain.
    """
    match = _BLOCK_CONV.fullmatch(name)
    if match is None or max(conv.kernel_size) == 1:
        return False
    return stages is None or int(match.group(1)) in stages


def split_aw_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits model keyword arguments into ``(aw_kwargs, other_kwargs)`` by ``AW_KWARGS``."""
    aw_kwargs = {key: value for key, value in kwargs.items() if key in AW_KWARGS}
    other = {key: value for key, value in kwargs.items() if key not in AW_KWARGS}
    return aw_kwargs, other


def convert_blocks(model: nn.Module, aw_kwargs: dict[str, Any]) -> list[str]:
    """Turns every residual-block k×k convolution of ``model`` into ``AWConv2d`` in place.

    Args:
        model: a ResNet whose blocks live at ``layer<stage>.<block>``.
        aw_kwargs: a subset of ``AW_KWARGS``: ``AWConv2d`` options and ``aw_stages``.

    Returns:
        The qualified names of the converted convolutions.
    """
    unknown = sorted(set(aw_kwargs) - set(AW_KWARGS))
    if unknown:
        raise TypeError(f"aw_kwargs has unknown keys {unknown}; expected a subset of {AW_KWARGS}")
    layer_options = {key: value for key, value in aw_kwargs.items() if key != "aw_stages"}
    stages = _check_stages(model, aw_kwargs.get("aw_stages"))
    _, converted = convert(
        model, include=lambda name, conv: is_block_conv(name, conv, stages), **layer_options
    )
    if not converted:
        raise ValueError(f"model {type(model).__name__} has no residual-block convolution to convert")
    return converted


def _check_stages(model: nn.Module, stages: Any) -> tuple[int, ...] | None:
    """``aw_stages`` as a tuple of existing stage numbers, or None for all stages."""
    if stages is None:
        return None
    present = sorted(
        {int(m.group(1)) for name, _ in model.named_modules() if (m := _BLOCK_CONV.fullmatch(name))}
    )
    if (
        isinstance(stages, (str, bytes))
        or not isinstance(stages, Sequence)
        or not stages
        or not all(isinstance(s, int) and not isinstance(s, bool) and s in present for s in stages)
    ):
        raise ValueError(
            f"aw_stages must be a non-empty list of stage numbers from {present}, got {stages!r}"
        )
    return tuple(stages)
