"""convert: which convolutions are swapped, and that converted models compute the same thing."""

from __future__ import annotations

import logging
import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import attention_reference, aw_conv2d_reference, randomize_generator, relative_error
from timm.layers import Conv2dSame, StdConv2d, create_feature_extractor
from torch import nn

from awconv import AWConv2d, convert
from awconv.layers import AWConv2dSame


def trained_looking_resnet18() -> nn.Module:
    """A torchvision ResNet-18 with random weights and BatchNorm statistics away from defaults."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_convert_resnet18_keeps_logits():
    model = trained_looking_resnet18()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    model, converted = convert(model)
    assert len(converted) == 16  # both 3x3 convs of the 8 basic blocks
    assert "conv1" not in converted
    assert all(name.startswith("layer") for name in converted)
    assert isinstance(model.layer1[0].conv1, AWConv2d)
    assert type(model.conv1) is nn.Conv2d and type(model.layer2[0].downsample[0]) is nn.Conv2d
    assert relative_error(model(x), expected) < 1e-5


def test_convert_keeps_state_dict_keys_of_the_plain_model():
    plain = trained_looking_resnet18()
    model, _ = convert(trained_looking_resnet18(), generator="lowrank", rank=4)
    assert set(plain.state_dict()) <= set(model.state_dict())
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert extra and all(".generator." in key for key in extra)


def test_convert_is_idempotent_and_skips_generators():
    model, first = convert(trained_looking_resnet18())
    model, second = convert(model, include=lambda name, conv: True)
    # only the stem and the 1x1 downsample convs remain plain; generators are never converted
    assert "conv1" in second and not any("generator" in name for name in second)
    assert len(first) + len(second) == 20


def test_include_policy_and_options():
    model, converted = convert(
        trained_looking_resnet18(),
        include=lambda name, conv: name.startswith("layer4") and conv.kernel_size == (3, 3),
        reduction=4,
    )
    assert converted == ["layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    assert model.layer4[0].conv1.generator.hidden == 256 // 4


def test_shared_convolution_is_converted_once():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), conv, nn.ReLU(), conv)
    model, converted = convert(model)
    assert converted == ["1", "3"] and model[1] is model[3]


def test_convert_a_bare_conv():
    conv = nn.Conv2d(3, 3, 3)
    layer, converted = convert(conv, include=lambda name, module: True)
    assert isinstance(layer, AWConv2d) and converted == [""]


def test_convert_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        convert("resnet18")
    with pytest.raises(TypeError, match="include must be a callable"):
        convert(nn.Conv2d(3, 3, 3), include="layer*")
    with pytest.raises(ValueError, match="generator must be one of"):
        convert(trained_looking_resnet18(), generator="huge")


def test_default_rule_converts_one_dimensional_kernels():
    """1x3 and 3x1 kernels are larger than 1x1: the default converts them (max, not min, of the sizes)."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, (1, 3), padding=(0, 1)), nn.Conv2d(4, 4, (3, 1))
    )
    model, converted = convert(model)
    assert converted == ["1", "2"]
    assert type(model[0]) is nn.Conv2d and model[1].kernel_size == (1, 3) and model[2].kernel_size == (3, 1)


def test_frozen_convolutions_stay_frozen():
    model = trained_looking_resnet18()
    model.layer1.requires_grad_(False)
    model, converted = convert(model)
    frozen = [n for n in converted if n.startswith("layer1.")]
    assert frozen and all(not model.get_submodule(n).weight.requires_grad for n in frozen)
    assert all(model.get_submodule(n).weight.requires_grad for n in converted if n not in frozen)
    same = Conv2dSame(4, 4, 3, stride=2, bias=True).requires_grad_(False)
    layer = AWConv2dSame.from_conv(same)
    assert not layer.weight.requires_grad and not layer.bias.requires_grad


def _tf_same_reference(x: torch.Tensor, kernel, stride, dilation) -> torch.Tensor:
    """TensorFlow "SAME": ceil(size / stride) outputs, the odd padding row/column at the end."""
    pads = []
    for size, k, s, d in zip(x.shape[-2:], kernel, stride, dilation, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return F.pad(x, (left, right, top, bottom))


@settings(max_examples=30, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(1, 13), st.integers(1, 13)),
    depthwise=st.booleans(),
    bias=st.booleans(),
)
def test_conv2d_same_converts_exactly_at_every_input_size(kernel, stride, dilation, size, depthwise, bias):
    torch.manual_seed(0)
    channels = (4, 4, 4) if depthwise else (3, 5, 1)
    conv = Conv2dSame(channels[0], channels[1], kernel, stride, 0, dilation, channels[2], bias)
    x = torch.randn(2, channels[0], *size)
    layer = AWConv2dSame.from_conv(conv)
    with torch.no_grad():
        expected = conv(x)
        assert (
            layer(x).shape
            == expected.shape
            == (2, channels[1], *(math.ceil(n / s) for n, s in zip(size, stride, strict=True)))
        )
        assert relative_error(layer(x), expected) < 1e-6  # zero attention: the plain convolution
        randomize_generator(layer)
        padded = _tf_same_reference(x, kernel, stride, dilation)
        reference = aw_conv2d_reference(
            padded,
            conv.weight,
            attention_reference(layer, padded),
            conv.bias,
            stride,
            0,
            dilation,
            conv.groups,
        )
        assert relative_error(layer(x), reference) < 1e-5


def test_aw_conv2d_same_scripts_and_stays_an_fx_leaf():
    layer = AWConv2dSame(4, 6, 3, stride=2)
    randomize_generator(layer)
    model = nn.Sequential(nn.ReLU(), layer)
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected, rtol=1e-5, atol=1e-5)
        extractor = create_feature_extractor(model, ["1"])
        assert any(n.op == "call_module" and n.target == "1" for n in extractor.graph.nodes)
        torch.testing.assert_close(extractor(x)["1"], expected)


def test_tf_efficientnet_b0_keeps_its_logits(caplog: pytest.LogCaptureFixture):
    """Its stride-2 convolutions are Conv2dSame: every k x k conv but the stem becomes AW, logits equal."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_b0", num_classes=10).eval()
    kxk = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
    same = [n for n, m in model.named_modules() if type(m) is Conv2dSame]
    x = torch.randn(2, 3, 45, 37)  # odd sizes: the "SAME" padding differs between layers
    with torch.no_grad():
        expected = model(x)
    with caplog.at_level(logging.DEBUG, logger="awconv.convert"):
        model, converted = convert(model, generator="lowrank")
    assert converted == kxk[1:] and kxk[0] == "conv_stem" and len(same) == 5
    assert all(type(model.get_submodule(n)) is AWConv2dSame for n in same[1:])
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert f"converted {len(kxk) - 1} of" in caplog.text
    with torch.no_grad():
        assert relative_error(model(x), expected) < 1e-5


def test_unconvertible_convolutions_are_named_in_a_warning(caplog: pytest.LogCaptureFixture):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), StdConv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    with caplog.at_level(logging.DEBUG, logger="awconv.convert"):
        model, converted = convert(model)
    assert converted == ["2"] and type(model[1]) is StdConv2d
    (warning,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert warning.levelname == "WARNING"
    assert "1 (StdConv2d)" in warning.getMessage() and "computes something else" in warning.getMessage()
