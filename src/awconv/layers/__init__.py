"""Layers: ``AWConv2d`` and its attention generator."""

from awconv.layers.attention_generator import GATES, GENERATORS, POOLS, AttentionGenerator
from awconv.layers.aw_conv2d import PADDING_MODES, AWConv2d

__all__ = ["GATES", "GENERATORS", "PADDING_MODES", "POOLS", "AWConv2d", "AttentionGenerator"]
