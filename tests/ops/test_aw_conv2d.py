"""aw_conv2d: every computation path against a float64 reference, gradients, autocast, errors."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import aw_conv2d_reference, relative_error

from awconv.ops import IMPLS, aw_conv2d
from awconv.ops.geometry import resolve_padding
from awconv.ops.paths import BMM_MAX_OUTPUT_PIXELS, choose_impl

PATHS = [impl for impl in IMPLS if impl != "auto"]


@st.composite
def conv_configs(draw):
    """Random convolution problems: groups (with depthwise), strides, dilations, paddings, kernels."""
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    in_per_group = 1 if depthwise else draw(st.integers(1, 4))
    out_per_group = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding_kind = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    if padding_kind == "same":
        stride = (1, 1)
        padding = "same"
    elif padding_kind == "valid":
        padding = "valid"
    elif padding_kind == "int":
        padding = draw(st.integers(0, 2))
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    pad_h, pad_w = (
        (0, 0) if isinstance(padding, str) else ((padding, padding) if isinstance(padding, int) else padding)
    )
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    height = draw(st.integers(max(1, span[0] - 2 * pad_h), span[0] + 6))
    width = draw(st.integers(max(1, span[1] - 2 * pad_w), span[1] + 6))
    return {
        "batch": draw(st.integers(1, 4)),
        "in_channels": in_per_group * groups,
        "out_channels": out_per_group * groups,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "size": (height, width),
        "bias": draw(st.booleans()),
        "residual": draw(st.booleans()),
        "channels_last": draw(st.booleans()),
    }


def make_problem(config, dtype=torch.float32, requires_grad=False):
    c2, c1g = config["out_channels"], config["in_channels"] // config["groups"]
    x = torch.randn(config["batch"], config["in_channels"], *config["size"], dtype=dtype)
    if config.get("channels_last"):
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(c2, c1g, *config["kernel"], dtype=dtype)
    attention = torch.randn(config["batch"], c2, c1g, *config["kernel"], dtype=dtype)
    bias = torch.randn(c2, dtype=dtype) if config["bias"] else None
    tensors = [x, weight, attention] + ([bias] if bias is not None else [])
    for tensor in tensors:
        tensor.requires_grad_(requires_grad)
    return x, weight, attention, bias


def conv_args(config):
    return config["stride"], config["padding"], config["dilation"], config["groups"]


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=40, deadline=None)
@given(config=conv_configs())
def test_forward_matches_float64_reference(impl, config):
    x, weight, attention, bias = make_problem(config)
    out = aw_conv2d(x, weight, attention, bias, *conv_args(config), residual=config["residual"], impl=impl)
    expected = aw_conv2d_reference(x, weight, attention, bias, *conv_args(config), config["residual"])
    assert out.shape == expected.shape
    assert out.dtype == torch.float32
    assert relative_error(out, expected) < 1e-5
    if config["channels_last"] and not x.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=25, deadline=None)
@given(config=conv_configs())
def test_composite_matches_float64_reference(config):
    """The composite form (ONNX export, TorchScript tracing, torch.func): forward and gradients."""
    x, weight, attention, bias = make_problem(config, torch.float64, requires_grad=True)
    inputs = [t for t in (x, weight, attention, bias) if t is not None]
    with mock.patch("awconv.ops.aw_conv2d.wants_composite", lambda: True):
        out = aw_conv2d(x, weight, attention, bias, *conv_args(config), residual=config["residual"])
    expected = aw_conv2d_reference(x, weight, attention, bias, *conv_args(config), config["residual"])
    assert relative_error(out, expected) < 1e-12
    if config["channels_last"] and not x.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    for got, want in zip(grads, torch.autograd.grad(expected, inputs, grad_out), strict=True):
        assert relative_error(got, want) < 1e-10


@pytest.mark.parametrize("impl", PATHS)
@settings(max_examples=15, deadline=None)
@given(config=conv_configs())
def test_gradients_match_float64_reference(impl, config):
    x, weight, attention, bias = make_problem(config, torch.float64, requires_grad=True)
    inputs = [t for t in (x, weight, attention, bias) if t is not None]
    out = aw_conv2d(x, weight, attention, bias, *conv_args(config), residual=config["residual"], impl=impl)
    expected = aw_conv2d_reference(x, weight, attention, bias, *conv_args(config), config["residual"])
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    for got, want in zip(grads, expected_grads, strict=True):
        assert relative_error(got, want) < 1e-10


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("residual", [True, False])
def test_gradcheck(impl, residual):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    attention = torch.randn(2, 6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def op(x, weight, attention, bias):
        return aw_conv2d(x, weight, attention, bias, (2, 1), 1, (1, 2), 2, residual=residual, impl=impl)

    assert torch.autograd.gradcheck(op, (x, weight, attention, bias))


def test_batch_of_one_all_paths_agree():
    torch.manual_seed(1)
    x, weight, attention = torch.randn(1, 8, 9, 9), torch.randn(4, 8, 3, 3), torch.randn(1, 4, 8, 3, 3)
    outputs = [aw_conv2d(x, weight, attention, padding=1, impl=impl) for impl in IMPLS]
    expected = aw_conv2d_reference(x, weight, attention, None, 1, 1, 1, 1)
    for out in outputs:
        assert relative_error(out, expected) < 1e-5


def test_auto_choice():
    assert choose_impl(1, 10_000) == "loop"
    assert choose_impl(8, BMM_MAX_OUTPUT_PIXELS) == "bmm"
    assert choose_impl(8, BMM_MAX_OUTPUT_PIXELS + 1) == "grouped"


def test_backward_keeps_attention_not_modulated_weights():
    """Only input, weight and attention are saved: no second (N, C2, C1, kh, kw) tensor."""
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    weight = torch.randn(16, 8, 3, 3, requires_grad=True)
    attention = torch.randn(4, 16, 8, 3, 3, requires_grad=True)
    saved_shapes = []

    def pack(tensor):
        saved_shapes.append(tuple(tensor.shape))
        return tensor

    for impl in PATHS:
        saved_shapes.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = aw_conv2d(x, weight, attention, padding=1, impl=impl)
        assert saved_shapes.count(tuple(attention.shape)) == 1, (impl, saved_shapes)
        out.sum().backward()


def test_autocast_bfloat16_stays_close_to_float32():
    torch.manual_seed(2)
    x, weight = torch.randn(4, 16, 12, 12), torch.randn(32, 16, 3, 3)
    attention = torch.randn(4, 32, 16, 3, 3).tanh()
    bias = torch.randn(32)
    expected = aw_conv2d(x, weight, attention, bias, padding=1)
    for impl in PATHS:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = aw_conv2d(x, weight, attention, bias, padding=1, impl=impl)
        assert out.dtype == torch.bfloat16
        assert relative_error(out, expected) < 2e-2


def test_autocast_backward_gives_float32_gradients():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    weight = torch.randn(4, 4, 3, 3, requires_grad=True)
    attention = torch.randn(2, 4, 4, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aw_conv2d(x, weight, attention, padding=1)
    out.float().sum().backward()
    assert x.grad.dtype == weight.grad.dtype == attention.grad.dtype == torch.float32


def test_resolve_padding_same_puts_extra_pixel_right_and_bottom():
    assert resolve_padding("same", (4, 3), (1, 1), (1, 1)) == (1, 1, 1, 2)
    assert resolve_padding((1, 2), (3, 3), (1, 1), (1, 1)) == (2, 2, 1, 1)


def _valid():
    return torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(2, 6, 4, 3, 3)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (
            lambda a: {**a, "input": torch.randn(4, 8, 8)},
            ValueError,
            r"input must have shape \(N, C1, H, W\)",
        ),
        (lambda a: {**a, "input": torch.randn(2, 5, 8, 8)}, ValueError, "input has 5 channels"),
        (lambda a: {**a, "attention": torch.randn(2, 6, 4, 3, 2)}, ValueError, "attention must have shape"),
        (lambda a: {**a, "weight": torch.randn(6, 4, 3)}, ValueError, "weight must have shape"),
        (
            lambda a: {**a, "input": torch.ones(2, 4, 8, 8, dtype=torch.int64)},
            TypeError,
            "input must have a floating",
        ),
        (lambda a: {**a, "input": torch.randn(2, 4, 2, 2)}, ValueError, "more than the padded input"),
        (lambda a: {**a, "impl": "fast"}, ValueError, "impl must be one of"),
        (lambda a: {**a, "padding": "full"}, ValueError, "padding must be"),
        (lambda a: {**a, "padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
        (lambda a: {**a, "stride": 0}, ValueError, "stride and dilation must be positive"),
        (lambda a: {**a, "stride": 1.5}, TypeError, "stride must be an int or a pair"),
        (lambda a: {**a, "bias": torch.randn(5)}, ValueError, "bias must have shape"),
        (lambda a: {**a, "input": [[1.0]]}, TypeError, "input must be a torch.Tensor"),
    ],
)
def test_bad_input_names_the_argument(mutate, error, match):
    x, weight, attention = _valid()
    args = mutate({"input": x, "weight": weight, "attention": attention})
    with pytest.raises(error, match=match):
        aw_conv2d(**args)


@pytest.mark.parametrize("impl", IMPLS)
def test_one_channel_channels_last_input_is_read_as_what_it_is(impl):
    """Found by the fuzz test above: x (1, 1, 5, 4) channels_last is contiguous with a channel stride
    of 1, which oneDNN (one thread, AVX-512) read as NHWC, returning wrong values at stride (1, 3)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(5):
            generator = torch.Generator().manual_seed(seed)
            x = torch.randn(1, 1, 5, 4, generator=generator).to(memory_format=torch.channels_last)
            weight, attention = torch.randn(1, 1, 4, 4, generator=generator), torch.randn(1, 1, 1, 4, 4)
            out = aw_conv2d(x, weight, attention, None, (1, 3), "valid", residual=False, impl=impl)
            expected = aw_conv2d_reference(x, weight, attention, None, (1, 3), "valid", 1, 1, False)
            assert relative_error(out, expected) < 1e-5, f"seed {seed}"
    finally:
        torch.set_num_threads(previous)
