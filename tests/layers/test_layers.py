"""AWConv2d and AttentionGenerator: references, identity at init, scripting, tracing, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from reference import attention_reference, aw_layer_reference, randomize_generator, relative_error
from strategies import layer_configs
from torch import nn

from awconv import AWConv2d
from awconv.layers import GENERATORS, PADDING_MODES


@settings(max_examples=60, deadline=None)
@given(config=layer_configs())
def test_layer_matches_float64_reference(config):
    layer = AWConv2d(*config["args"], **config["kwargs"])
    randomize_generator(layer)
    x = torch.randn(config["batch"], config["args"][0], *config["size"])
    if config["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = layer(x)
        attention = layer.attention(x)
    assert attention.shape == (x.shape[0], *layer.weight.shape)
    # The reference reads the generator's options from the layer: they must be the ones asked for.
    kwargs, generator = config["kwargs"], layer.generator
    asked = (config["args"][0], kwargs["generator"], kwargs["rank"], kwargs["gate"], kwargs["pool"])
    assert (generator.in_channels, generator.kind, generator.rank, generator.gate, generator.pool) == asked
    assert relative_error(attention, attention_reference(layer, x)) < 1e-5
    assert relative_error(out, aw_layer_reference(layer, x)) < 1e-5
    if config["channels_last"] and not x.is_contiguous():  # channels_last in, channels_last out
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("gate", ["tanh", "none"])
def test_fresh_layer_is_its_plain_convolution(padding_mode, generator, gate):
    layer = AWConv2d(6, 4, (3, 2), padding=(1, 2), padding_mode=padding_mode, generator=generator, gate=gate)
    conv = nn.Conv2d(6, 4, (3, 2), padding=(1, 2), padding_mode=padding_mode)
    conv.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(3, 6, 7, 8)
    assert torch.count_nonzero(layer.attention(x)) == 0
    assert relative_error(layer(x), conv(x)) < 1e-6


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_empty_batch_and_unbatched_input_behave_as_in_conv2d(padding_mode):
    layer = AWConv2d(4, 6, 3, padding=1, stride=2, padding_mode=padding_mode)
    randomize_generator(layer)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2, padding_mode=padding_mode)
    x = torch.randn(3, 4, 7, 7)
    out = layer(x)
    assert relative_error(layer(x[1]), out[1]) < 1e-6 and layer(x[1]).shape == conv(x[1]).shape
    assert relative_error(layer.attention(x[1]), layer.attention(x)[1]) < 1e-6
    empty = torch.randn(0, 4, 7, 7, requires_grad=True)
    assert layer(empty).shape == conv(empty).shape == (0, 6, 4, 4)
    layer(empty).sum().backward()
    assert empty.grad.shape == empty.shape
    assert all(torch.count_nonzero(p.grad) == 0 for p in layer.parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_takes_unbatched_and_empty_inputs():
    layer = AWConv2d(4, 6, 3, padding=1, generator="lowrank", rank=2)
    randomize_generator(layer)
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 4, 5, 5)
    assert relative_error(scripted(x[0]), layer(x)[0]) < 1e-5
    assert scripted(x[:0]).shape == (0, 6, 5, 5)


def test_sigmoid_gate_starts_at_one_half():
    layer = AWConv2d(4, 4, 3, gate="sigmoid")
    assert torch.allclose(layer.attention(torch.randn(2, 4, 5, 5)), torch.full((2, 4, 4, 3, 3), 0.5))


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("generator", GENERATORS)
def test_sigmoid_gate_through_the_fused_forward(padding_mode, generator):
    """At init the sigmoid gate gives 0.5, so the layer is its conv with 1.5x the weight; off init
    the fused forward equals the float64 reference with its own sigmoid."""
    torch.manual_seed(5)
    kwargs = {"padding": (1, 2), "padding_mode": padding_mode}
    layer = AWConv2d(6, 4, (3, 2), generator=generator, rank=2, gate="sigmoid", **kwargs)
    conv = nn.Conv2d(6, 4, (3, 2), **kwargs)
    conv.load_state_dict({"weight": 1.5 * layer.weight, "bias": layer.bias})
    x = torch.randn(3, 6, 7, 8)
    with torch.no_grad():
        assert relative_error(layer(x), conv(x)) < 1e-6
        randomize_generator(layer)
        attention = attention_reference(layer, x)
        assert attention.std() > 0.1  # the gate is far from its constant init
        assert relative_error(layer(x), aw_layer_reference(layer, x)) < 1e-5


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(
    ("kernel", "padding", "dilation"),
    [((3, 4), "same", (1, 1)), ((2, 3), "same", (2, 1)), ((3, 3), (2, 1), (1, 2)), ((3, 2), "valid", (1, 1))],
)
def test_reference_and_layer_pad_as_nn_conv2d(padding_mode, kernel, padding, dilation):
    """The reference's own padding and the layer's, at zero attention, both equal ``nn.Conv2d``'s
    for every padding mode, ``"same"`` with odd and even kernels included."""
    conv = nn.Conv2d(4, 6, kernel, padding=padding, dilation=dilation, padding_mode=padding_mode).double()
    layer = AWConv2d.from_conv(conv)
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = conv(x)
        assert relative_error(aw_layer_reference(layer, x), expected) < 1e-12
        assert relative_error(layer(x), expected) < 1e-12
        assert relative_error(AWConv2d.from_conv(conv.float())(x.float()), expected) < 1e-6


def test_from_conv_copies_requires_grad():
    conv = nn.Conv2d(4, 4, 3)
    conv.weight.requires_grad_(False)
    layer = AWConv2d.from_conv(conv)
    assert not layer.weight.requires_grad and layer.bias.requires_grad
    conv.requires_grad_(True).bias.requires_grad_(False)
    layer = AWConv2d.from_conv(conv)
    assert layer.weight.requires_grad and not layer.bias.requires_grad
    assert all(p.requires_grad for p in layer.generator.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": 1},
        {"padding": "same", "dilation": 2, "bias": False},
        {"stride": 2, "groups": 4, "padding_mode": "reflect", "padding": 1},
        {"groups": 8, "padding": 1, "padding_mode": "circular"},
    ],
)
def test_from_conv_equals_conv(kwargs):
    conv = nn.Conv2d(8, 16, 3, **kwargs)
    layer = AWConv2d.from_conv(conv)
    x = torch.randn(2, 8, 9, 9)
    assert relative_error(layer(x), conv(x)) < 1e-6
    assert layer.state_dict().keys() >= conv.state_dict().keys()
    assert torch.equal(layer.weight, conv.weight)


def test_from_conv_keeps_device_dtype_mode_and_options():
    conv = nn.Conv2d(4, 4, 3).double().eval()
    layer = AWConv2d.from_conv(conv, generator="lowrank", rank=2, reduction=2)
    assert layer.weight.dtype == torch.float64 and not layer.training
    assert layer.generator.kind == "lowrank" and layer.generator.rank == 2
    assert repr(layer).count("generator='lowrank'") == 1 and repr(layer).count("rank=2") == 1


def test_from_conv_refuses_conv_subclasses():
    class StandardizedConv(nn.Conv2d):
        pass

    with pytest.raises(TypeError, match=r"conv must be a plain torch\.nn\.Conv2d"):
        AWConv2d.from_conv(StandardizedConv(3, 3, 3))


def test_not_treated_as_a_plain_conv():
    assert not isinstance(AWConv2d(3, 3, 3), nn.Conv2d)


def test_layer_gradcheck():
    torch.manual_seed(3)
    for generator in GENERATORS:
        layer = AWConv2d(4, 6, 3, padding=1, groups=2, generator=generator, rank=2, reduction=1).double()
        randomize_generator(layer)
        x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(layer, (x,))


def test_every_parameter_gets_a_gradient_once_attention_is_nonzero():
    layer = AWConv2d(4, 6, 3, padding=1, generator="lowrank", rank=2)
    randomize_generator(layer)
    layer(torch.randn(2, 4, 6, 6)).square().sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_lowrank_output_head_learns_from_zero_init():
    layer = AWConv2d(4, 6, 3, padding=1, generator="lowrank")
    layer(torch.randn(2, 4, 6, 6)).square().sum().backward()
    assert layer.generator.pointconv2.weight.grad.abs().sum() > 0


def test_batch_one_training_works():
    layer = AWConv2d(4, 4, 3, padding=1)
    randomize_generator(layer)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(1, 4, 5, 5)).sum().backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in layer.parameters())


def test_autocast_bfloat16_layer():
    torch.manual_seed(4)
    layer = AWConv2d(16, 16, 3, padding=1)
    randomize_generator(layer, 0.1)
    x = torch.randn(2, 16, 10, 10)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    assert relative_error(out, expected) < 2e-2


def _small_model() -> nn.Sequential:
    model = nn.Sequential(
        AWConv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        AWConv2d(8, 8, 3, stride=2, groups=2, generator="lowrank", rank=2, pool="global"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    for module in model:
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.2)
    return model.eval()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_matches_eager():
    model = _small_model()
    scripted = torch.jit.script(model)
    x = torch.randn(3, 3, 12, 12)
    assert relative_error(scripted(x), model(x)) < 1e-5


def test_fx_trace_keeps_awconv2d_as_a_leaf():
    from timm.layers import is_notrace_module
    from timm.models import create_feature_extractor

    model = _small_model()
    assert is_notrace_module(AWConv2d)
    extractor = create_feature_extractor(model, return_nodes={"3": "aw", "6": "logits"})
    call_modules = [node.target for node in extractor.graph.nodes if node.op == "call_module"]
    assert "0" in call_modules and "3" in call_modules  # called as modules, not traced through
    x = torch.randn(2, 3, 12, 12)
    features = extractor(x)
    assert relative_error(features["logits"], model(x)) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"generator": "dense"}, ValueError, "generator must be one of"),
        ({"gate": "relu"}, ValueError, "gate must be one of"),
        ({"pool": "max"}, ValueError, "pool must be one of"),
        ({"impl": "cuda"}, ValueError, "impl must be one of"),
        ({"rank": 0}, ValueError, "rank must be a positive int"),
        ({"reduction": 0}, ValueError, "reduction must be a positive int"),
        ({"groups": 3}, ValueError, "divisible by groups"),
        ({"padding_mode": "mirror"}, ValueError, "padding_mode must be one of"),
        ({"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
        ({"kernel_size": 0}, ValueError, "kernel_size, stride and dilation must be positive"),
        ({"kernel_size": (3, 3, 3)}, TypeError, "kernel_size must be an int or a pair"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    arguments = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=match):
        AWConv2d(**arguments)


def test_bad_forward_input():
    layer = AWConv2d(4, 8, 3)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 4, H, W\)"):
        layer(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"input must have shape \(N, 4, H, W\) or \(4, H, W\)"):
        layer(torch.randn(1, 2, 4, 8, 8))
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        layer(torch.ones(2, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="more than the padded input"):
        layer(torch.randn(1, 4, 2, 2))
