"""The TorchScript path of AWConv2d (``_forward_scripted``), run eagerly against the float64 reference.

Scripting itself is tested in test_layers.py; calling the path as a Python method checks what it
computes at many shapes in a fraction of the time, and under mutation testing, whose trampolines
TorchScript cannot compile.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from reference import aw_layer_reference, randomize_generator, relative_error
from strategies import layer_configs
from torch import nn

from awconv import AWConv2d


@settings(max_examples=40, deadline=None)
@given(config=layer_configs())
def test_jit_path_run_eagerly_matches_float64_reference(config):
    layer = AWConv2d(*config["args"], **config["kwargs"])
    randomize_generator(layer)
    x = torch.randn(config["batch"], config["args"][0], *config["size"])
    with torch.no_grad():
        out = layer._forward_scripted(x)
        unbatched = layer._forward_scripted(x[0])
    expected = aw_layer_reference(layer, x)
    assert out.shape == expected.shape and unbatched.shape == expected.shape[1:]
    assert relative_error(out, expected) < 1e-5
    assert relative_error(unbatched, expected[0]) < 1e-5


@settings(max_examples=20, deadline=None)
@given(config=layer_configs())
def test_jit_path_gives_an_empty_batch_nn_conv2ds_shape(config):
    layer = AWConv2d(*config["args"], **config["kwargs"])
    geometry = ("stride", "padding", "dilation", "groups", "padding_mode")
    conv = nn.Conv2d(*config["args"], **{key: config["kwargs"][key] for key in geometry})
    x = torch.randn(0, config["args"][0], *config["size"])
    with torch.no_grad():
        assert layer._forward_scripted(x).shape == conv(x).shape
