"""Where AW-convolution goes in a ResNet: every k×k convolution of the residual blocks.

Paper: Zhu et al., "An Attention Module for Convolutional Neural Networks" (arXiv 2108.08205).
Both 3×3 convolutions of a basic block and the 3×3 convolution of a bottleneck become
``AWConv2d``; the stem, the 1×1 convolutions, the shortcut projections and the convolutions inside
SE/CBAM modules stay plain (``docs/method.md``, section 4).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from awconv.convert import convert

__all__ = ["AW_KWARGS", "convert_blocks", "is_block_conv", "split_aw_kwargs"]

# The AWConv2d options an ``aw_*`` model accepts through ``timm.create_model``.
AW_KWARGS = ("reduction", "min_hidden", "generator", "rank", "gate", "pool", "impl")

# ``layer<stage>.<block>.conv<k>``: a convolution of a residual block's main branch.
_BLOCK_CONV = re.compile(r"layer\d+\.\d+\.conv\d+")


def is_block_conv(name: str, conv: nn.Conv2d) -> bool:
    """True for a k×k (k > 1) convolution of a residual block's main branch.

    CBAM's 7×7 spatial-attention convolution (``layerS.B.se.spatial...``) and shortcut
    projections (``layerS.B.downsample.0``) do not match the name pattern and stay plain.
    """
    return _BLOCK_CONV.fullmatch(name) is not None and max(conv.kernel_size) > 1


def split_aw_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits model keyword arguments into ``(aw_kwargs, other_kwargs)`` by ``AW_KWARGS``."""
    aw_kwargs = {key: value for key, value in kwargs.items() if key in AW_KWARGS}
    other = {key: value for key, value in kwargs.items() if key not in AW_KWARGS}
    return aw_kwargs, other


def convert_blocks(model: nn.Module, aw_kwargs: dict[str, Any]) -> list[str]:
    """Turns every residual-block k×k convolution of ``model`` into ``AWConv2d`` in place.

    Args:
        model: a ResNet whose blocks live at ``layer<stage>.<block>``.
        aw_kwargs: ``AWConv2d`` options, a subset of ``AW_KWARGS``.

    Returns:
        The qualified names of the converted convolutions.
    """
    unknown = sorted(set(aw_kwargs) - set(AW_KWARGS))
    if unknown:
        raise TypeError(f"aw_kwargs has unknown keys {unknown}; expected a subset of {AW_KWARGS}")
    _, converted = convert(model, include=is_block_conv, **aw_kwargs)
    if not converted:
        raise ValueError(f"model {type(model).__name__} has no residual-block convolution to convert")
    return converted
