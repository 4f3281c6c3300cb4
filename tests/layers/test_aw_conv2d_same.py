"""AWConv2dSame's own arguments: its defaults, its refusals, and the generator options it passes on."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Conv2dSame
from torch import nn

from awconv.layers import AWConv2dSame


def test_defaults_are_timms_stride_1_with_zero_padding_and_bias() -> None:
    layer = AWConv2dSame(4, 6, 3)
    assert layer.stride == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
    assert layer.padding_mode == "zeros" and layer.bias is not None
    assert layer(torch.randn(2, 4, 7, 5)).shape == (2, 6, 7, 5)  # ceil(H / 1) rows, ceil(W / 1) columns


def test_only_zero_padding_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"^padding_mode must be 'zeros' for 'SAME' padding, got 'reflect'$"):
        AWConv2dSame(4, 6, 3, padding_mode="reflect")


def test_generator_options_reach_the_generator() -> None:
    layer = AWConv2dSame(4, 6, 3, stride=2, generator="lowrank", rank=3, gate="sigmoid", pool="global")
    options = (layer.generator.kind, layer.generator.rank, layer.generator.gate, layer.generator.pool)
    assert options == ("lowrank", 3, "sigmoid", "global")


def test_from_conv_passes_generator_options_and_refuses_other_convolutions() -> None:
    conv = Conv2dSame(4, 6, 3, stride=2, bias=False)
    layer = AWConv2dSame.from_conv(conv, generator="lowrank", rank=2, gate="sigmoid")
    assert (layer.generator.kind, layer.generator.rank, layer.generator.gate) == ("lowrank", 2, "sigmoid")
    assert layer.bias is None and torch.equal(layer.weight, conv.weight)
    with pytest.raises(TypeError, match=r"^conv must be a timm Conv2dSame, got Conv2d$"):
        AWConv2dSame.from_conv(nn.Conv2d(4, 6, 3))
