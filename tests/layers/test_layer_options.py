"""AWConv2d's and AttentionGenerator's own surface: init, repr, argument checks and error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from awconv import AWConv2d
from awconv.layers import AttentionGenerator


@pytest.mark.parametrize("bias", [True, False])
def test_weight_and_bias_start_as_nn_conv2ds_init(bias: bool) -> None:
    layer = AWConv2d(8, 4, (3, 2), groups=2, bias=bias)  # weight (4, 4, 3, 2): every dimension apart
    conv = nn.Conv2d(8, 4, (3, 2), groups=2, bias=bias)
    torch.manual_seed(7)
    layer.reset_parameters()
    torch.manual_seed(7)
    conv.reset_parameters()
    assert torch.equal(layer.weight, conv.weight)
    assert (layer.bias is None) == (not bias) and (not bias or torch.equal(layer.bias, conv.bias))


def test_extra_repr_names_every_option_that_differs_from_the_default() -> None:
    assert AWConv2d(4, 6, 3).extra_repr() == "4, 6, kernel_size=(3, 3), stride=(1, 1), padding=(0, 0)"
    layer = AWConv2d(4, 6, (3, 2), 2, 1, (2, 1), 2, False, "reflect", impl="loop")
    assert layer.extra_repr() == (
        "4, 6, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(2, 1), groups=2, bias=False, "
        "padding_mode='reflect', impl='loop'"
    )
    assert AWConv2d(4, 6, 3, dilation=(1, 2)).extra_repr().endswith("padding=(0, 0), dilation=(1, 2)")


def test_generator_repr_and_its_pointwise_convolutions() -> None:
    full = AttentionGenerator(4, 6, (3, 3))
    assert full.extra_repr() == "generator='full', hidden=8, gate='tanh', pool='kernel'"
    lowrank = AttentionGenerator(4, 6, (3, 3), generator="lowrank", rank=2, gate="sigmoid")
    assert lowrank.extra_repr() == "generator='lowrank', hidden=8, gate='sigmoid', pool='kernel', rank=2"
    for generator, count in ((full, 2), (lowrank, 3)):
        convs = [m for m in generator.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == count and all(conv.kernel_size == (1, 1) for conv in convs)


def test_generator_defaults_to_one_group() -> None:
    generator = AttentionGenerator(4, 6, (3, 2))
    assert generator(torch.randn(2, 4, 5, 5)).shape == (2, 6, 4, 3, 2)


def test_every_parameter_takes_the_requested_dtype() -> None:
    for generator in ("full", "lowrank"):
        layer = AWConv2d(4, 6, 3, generator=generator, dtype=torch.float64)
        assert {p.dtype for p in layer.parameters()} == {torch.float64}


@pytest.mark.parametrize("option", ["reduction", "min_hidden", "rank"])
def test_bools_are_not_accepted_as_positive_ints(option: str) -> None:
    with pytest.raises(ValueError, match=rf"^{option} must be a positive int, got True$"):
        AWConv2d(4, 6, 3, generator="lowrank", **{option: True})


def test_from_conv_keeps_the_device_and_names_what_it_refuses() -> None:
    layer = AWConv2d.from_conv(nn.Conv2d(4, 6, 3, device="meta"))
    assert {p.device.type for p in layer.parameters()} == {"meta"}

    class Scaled(nn.Conv2d):
        pass

    with pytest.raises(TypeError) as raised:
        AWConv2d.from_conv(Scaled(4, 6, 3))
    assert str(raised.value) == (
        "conv must be a plain torch.nn.Conv2d, got Scaled; subclasses may compute something other than "
        "F.conv2d with their weights"
    )


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_input_errors_name_what_was_given() -> None:
    layer = AWConv2d(4, 6, 3)
    with pytest.raises(TypeError, match=r"^input must have a floating-point dtype, got torch\.int64$"):
        layer(torch.zeros(1, 4, 5, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"^input must have a floating-point dtype, got list$"):
        layer.attention([1.0])
    quantized = torch.quantize_per_tensor(torch.randn(1, 4, 5, 5), 0.1, 0, torch.quint8)
    with pytest.raises(TypeError) as raised:
        layer(quantized)
    assert str(raised.value) == (
        "input must be a float tensor, got a quantized torch.quint8 one: torch.ao.quantization cannot "
        "quantize AWConv2d; for int8 inference quantize the exported ONNX model with ONNX Runtime: "
        "awconv export MODEL --format onnx --quantize int8 (awconv.quantization)"
    )


def test_unbatched_attention_is_the_batched_one_without_n() -> None:
    layer = AWConv2d(4, 6, 3)
    with torch.no_grad():
        layer.generator.pointconv2.weight.normal_()
        x = torch.randn(4, 7, 7)
        assert torch.allclose(layer.attention(x), layer.attention(x[None])[0])
        assert layer.attention(x).shape == layer.weight.shape


def test_generator_defaults() -> None:
    assert AWConv2d(256, 8, 3).generator.hidden == 16  # 256 // reduction 16
    assert AWConv2d(32, 8, 3).generator.hidden == 8  # min_hidden 8
    generator = AWConv2d(4, 6, 3, generator="lowrank").generator
    assert generator.rank == 1 and generator.pointconv2.out_channels == 6
    direct = AttentionGenerator(256, 8, (3, 3))
    assert (direct.hidden, direct.kind, direct.gate, direct.pool) == (16, "full", "tanh", "kernel")
    assert AttentionGenerator(32, 8, (3, 3), generator="lowrank").rank == 1
    assert AttentionGenerator(32, 8, (3, 3)).hidden == 8


@pytest.mark.parametrize("name", ["in_channels", "out_channels", "groups"])
@pytest.mark.parametrize("value", [0, True, 2.0])
def test_channel_and_group_counts_must_be_positive_ints(name: str, value) -> None:
    arguments = {"in_channels": 4, "out_channels": 6, "groups": 1, name: value}
    with pytest.raises(ValueError, match=rf"^{name} must be a positive int, got {value!r}$"):
        AWConv2d(arguments["in_channels"], arguments["out_channels"], 3, groups=arguments["groups"])


@pytest.mark.parametrize(("in_channels", "out_channels"), [(4, 6), (6, 4), (3, 5)])
def test_both_channel_counts_must_divide_by_groups(in_channels: int, out_channels: int) -> None:
    message = (
        rf"^in_channels \({in_channels}\) and out_channels \({out_channels}\) must both be divisible by "
        r"groups \(4\)$"
    )
    with pytest.raises(ValueError, match=message):
        AWConv2d(in_channels, out_channels, 3, groups=4)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation", "padding"])
def test_geometry_arguments_are_named_when_they_are_not_pairs(name: str) -> None:
    arguments = {"kernel_size": 3, name: (1, 2, 3)}
    with pytest.raises(TypeError, match=rf"^{name} must be an int or a pair of ints, got \(1, 2, 3\)$"):
        AWConv2d(4, 6, **arguments)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
def test_kernel_stride_and_dilation_must_be_positive(name: str) -> None:
    arguments = {"kernel_size": 3, "stride": 1, "dilation": 1, name: (1, 0)}
    message = (
        (
            rf"^kernel_size, stride and dilation must be positive, got {arguments['kernel_size']!r}, "
            rf"{arguments['stride']!r} and {arguments['dilation']!r}$"
        )
        .replace("(", r"\(")
        .replace(")", r"\)")
    )
    with pytest.raises(ValueError, match=message):
        AWConv2d(4, 6, **arguments)
