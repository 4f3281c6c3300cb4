"""Layers: ``AWConv2d``, its "SAME"-padded counterpart ``AWConv2dSame``, and the attention generator."""

from awconv.layers.attention_generator import GATES, GENERATORS, POOLS, AttentionGenerator
from awconv.layers.aw_conv2d import PADDING_MODES, AWConv2d
from awconv.layers.aw_conv2d_same import AWConv2dSame

__all__ = ["GATES", "GENERATORS", "PADDING_MODES", "POOLS", "AWConv2d", "AWConv2dSame", "AttentionGenerator"]
