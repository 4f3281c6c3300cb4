"""aw_conv2d_fused against aw_conv2d on the gated logits, in float64, with gradients; the operator
and the composite form (what ONNX export, TorchScript tracing and torch.func run) alike."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import aw_conv2d_reference, relative_error

from awconv.ops.fused import FUSED_GATES, FUSED_GENERATORS, aw_conv2d_fused

GATE_FUNCTIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda t: t}


def reference_attention(generator, factors, out_channels, kernel):
    """The gated logits of the fused operator's docstring, expanded to the kernel's taps."""
    if generator == "full":
        hidden, head_weight, head_bias = factors
        logits = torch.einsum("kd,ndp->nkp", head_weight, hidden) + head_bias[:, None]
        logits = logits.reshape(hidden.shape[0], out_channels, -1, hidden.shape[-1])
    else:
        factor_out, factor_in = factors
        logits = (factor_out.unsqueeze(3) * factor_in.unsqueeze(1)).sum(dim=2)
    n, c2, c1g, _ = logits.shape
    return logits, (n, c2, c1g, *kernel)


@st.composite
def fused_problems(draw):
    groups = draw(st.integers(1, 2))
    c1g, c2g = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    taps = draw(st.sampled_from([1, kernel[0] * kernel[1]]))
    return {
        "batch": draw(st.integers(1, 5)),
        "groups": groups,
        "in_channels": c1g * groups,
        "out_channels": c2g * groups,
        "kernel": kernel,
        "taps": taps,
        "stride": draw(st.integers(1, 2)),
        "padding": draw(st.sampled_from([0, 1, (1, 0)])),
        "size": (draw(st.integers(3, 7)), draw(st.integers(3, 7))),
        "generator": draw(st.sampled_from(FUSED_GENERATORS)),
        "gate": draw(st.sampled_from(FUSED_GATES)),
        "hidden": draw(st.integers(1, 4)),
        "rank": draw(st.integers(1, 3)),
        "chunk_size": draw(st.sampled_from([None, 1, 2, 3])),
        "impl": draw(st.sampled_from(["auto", "grouped", "bmm", "loop"])),
        "bias": draw(st.booleans()),
    }


def make_tensors(problem, dtype):
    n, c1, c2, g = problem["batch"], problem["in_channels"], problem["out_channels"], problem["groups"]
    c1g, taps = c1 // g, problem["taps"]
    x = torch.randn(n, c1, *problem["size"], dtype=dtype)
    weight = torch.randn(c2, c1g, *problem["kernel"], dtype=dtype)
    bias = torch.randn(c2, dtype=dtype) if problem["bias"] else None
    if problem["generator"] == "full":
        d = problem["hidden"]
        factors = [
            torch.randn(n, d, taps, dtype=dtype),
            torch.randn(c2 * c1g, d, dtype=dtype) * 0.5,
            torch.randn(c2 * c1g, dtype=dtype) * 0.5,
        ]
    else:
        r = problem["rank"]
        factors = [torch.randn(n, c2, r, taps, dtype=dtype), torch.randn(n, r, c1g, taps, dtype=dtype)]
    return x, weight, bias, factors


def composite_route():
    """Makes ``aw_conv2d_fused`` take the composite form, as it does under ONNX export."""
    return mock.patch("awconv.ops.fused.wants_composite", lambda: True)


def run_both(problem, dtype):
    x, weight, bias, factors = make_tensors(problem, dtype)
    geometry = (problem["stride"], problem["padding"], 1, problem["groups"])
    out = aw_conv2d_fused(
        x, weight, factors, bias, *geometry, generator=problem["generator"], gate=problem["gate"],
        impl=problem["impl"], chunk_size=problem["chunk_size"],
    )  # fmt: skip
    logits, shape = reference_attention(
        problem["generator"], [f.double() for f in factors], weight.shape[0], problem["kernel"]
    )
    attention = (
        GATE_FUNCTIONS[problem["gate"]](logits)
        .reshape(*shape[:3], -1)
        .expand(*shape[:3], shape[3] * shape[4])
    )
    expected = aw_conv2d_reference(x, weight, attention.reshape(shape), bias, *geometry)
    return out, expected, (x, weight, bias, factors)


@settings(max_examples=60, deadline=None)
@given(problem=fused_problems())
def test_fused_forward_matches_float64_reference(problem):
    out, expected, _ = run_both(problem, torch.float32)
    assert relative_error(out, expected) < 1e-5


@settings(max_examples=25, deadline=None)
@given(problem=fused_problems())
def test_composite_forward_matches_float64_reference(problem):
    with composite_route():
        out, expected, _ = run_both(problem, torch.float32)
    assert relative_error(out, expected) < 1e-5


@settings(max_examples=40, deadline=None)
@given(problem=fused_problems())
def test_fused_gradients_match_float64_reference(problem):
    check_gradients(problem)


@settings(max_examples=20, deadline=None)
@given(problem=fused_problems())
def test_composite_gradients_match_float64_reference(problem):
    with composite_route():
        check_gradients(problem)


def check_gradients(problem):
    x, weight, bias, factors = make_tensors(problem, torch.float64)
    inputs = [t for t in (x, weight, bias, *factors) if t is not None]
    for tensor in inputs:
        tensor.requires_grad_(True)
    geometry = (problem["stride"], problem["padding"], 1, problem["groups"])
    out = aw_conv2d_fused(
        x, weight, factors, bias, *geometry, generator=problem["generator"], gate=problem["gate"],
        impl=problem["impl"], chunk_size=problem["chunk_size"],
    )  # fmt: skip
    logits, shape = reference_attention(problem["generator"], factors, weight.shape[0], problem["kernel"])
    attention = (
        GATE_FUNCTIONS[problem["gate"]](logits)
        .reshape(*shape[:3], -1)
        .expand(*shape[:3], shape[3] * shape[4])
    )
    expected = aw_conv2d_reference(x, weight, attention.reshape(shape), bias, *geometry)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    for got, want in zip(grads, expected_grads, strict=True):
        assert relative_error(got, want) < 1e-10


@pytest.mark.parametrize("generator", FUSED_GENERATORS)
def test_fused_gradcheck(generator):
    problem = {
        "batch": 3, "groups": 2, "in_channels": 4, "out_channels": 4, "kernel": (3, 2), "taps": 6,
        "stride": 1, "padding": 1, "size": (4, 5), "generator": generator, "gate": "tanh", "hidden": 3,
        "rank": 2, "chunk_size": 2, "impl": "auto", "bias": True,
    }  # fmt: skip
    x, weight, bias, factors = make_tensors(problem, torch.float64)
    inputs = (x, weight, bias, *factors)
    for tensor in inputs:
        tensor.requires_grad_(True)

    def grouped(x, weight, bias, *factors):
        return aw_conv2d_fused(x, weight, factors, bias, 1, 1, 1, 2, generator=generator, chunk_size=2)

    assert torch.autograd.gradcheck(grouped, inputs)

    def bmm(x, weight, bias, *factors):
        return aw_conv2d_fused(x, weight, factors, bias, 1, 1, 1, 2, generator=generator, impl="bmm")

    assert torch.autograd.gradcheck(bmm, inputs)


def test_fused_keeps_no_attention_sized_tensor_for_backward():
    x = torch.randn(4, 16, 6, 6, requires_grad=True)
    weight = torch.randn(32, 16, 3, 3, requires_grad=True)
    factors = [torch.randn(4, 8, 9, requires_grad=True), torch.randn(32 * 16, 8), torch.randn(32 * 16)]
    attention_numel = 4 * weight.numel()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = aw_conv2d_fused(x, weight, factors, padding=1)
    assert max(saved) < attention_numel
    out.sum().backward()


def test_fused_autocast_bfloat16():
    torch.manual_seed(0)
    x, weight = torch.randn(2, 8, 6, 6), torch.randn(8, 8, 3, 3)
    factors = [torch.randn(2, 4, 9), torch.randn(64, 4) * 0.3, torch.randn(64) * 0.3]
    expected = aw_conv2d_fused(x, weight, factors, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aw_conv2d_fused(x, weight, factors, padding=1)
    assert out.dtype == torch.bfloat16 and relative_error(out, expected) < 2e-2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"generator": "dense"}, ValueError, "generator must be one of"),
        ({"gate": "relu"}, ValueError, "gate must be one of"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
        (
            {"factors": [torch.randn(2, 4, 5)]},
            ValueError,
            r"factors must be a sequence \(hidden, head_weight",
        ),
        ({"factors": [torch.randn(2, 4, 5), torch.randn(64, 4), torch.randn(64)]}, ValueError, "P = 1 or"),
        (
            {"factors": [torch.randn(2, 4, 9), torch.randn(63, 4), torch.randn(64)]},
            ValueError,
            "head_weight must",
        ),
        (
            {"factors": [torch.randn(2, 4, 9), torch.randn(64, 4), torch.ones(64, dtype=torch.long)]},
            TypeError,
            "head_bias must have a floating",
        ),
    ],
)
def test_fused_bad_arguments(kwargs, error, match):
    arguments = {
        "input": torch.randn(2, 8, 6, 6),
        "weight": torch.randn(8, 8, 3, 3),
        "factors": [torch.randn(2, 4, 9), torch.randn(64, 4), torch.randn(64)],
        **kwargs,
    }
    with pytest.raises(error, match=match):
        aw_conv2d_fused(**arguments)


@pytest.mark.parametrize("gate", ["tanh", "sigmoid"])
def test_saturated_gate_keeps_relative_precision(gate):
    """Logits near -6 make 1 + tanh(z) ~ 1e-5: computed as 2 sigmoid(2z), it does not cancel."""
    torch.manual_seed(0)
    x, weight = torch.randn(2, 4, 5, 5), torch.randn(4, 4, 3, 3)
    factors = [torch.rand(2, 3, 9), torch.randn(16, 3) * 0.01, torch.full((16,), -6.0)]
    out = aw_conv2d_fused(x, weight, factors, padding=1, gate=gate)
    logits = (
        torch.einsum("kd,ndp->nkp", factors[1].double(), factors[0].double()) + factors[2].double()[:, None]
    )
    attention = GATE_FUNCTIONS[gate](logits).reshape(2, 4, 4, 3, 3)
    expected = aw_conv2d_reference(x, weight, attention, None, 1, 1, 1, 1)
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("rank", [1, 3])
def test_lowrank_logits_are_one_contiguous_product(rank: int) -> None:
    """The logits are written once, contiguous, in the tap-major layout the later passes expect:
    a strided result (what einsum returns for rank 1) would be copied by every pass after it."""
    from awconv.ops.fused_aten import logits as fused_logits

    factor_out, factor_in = (
        torch.randn(3, 5, rank, 9, dtype=torch.float64),
        torch.randn(3, rank, 4, 9, dtype=torch.float64),
    )
    logits = fused_logits("lowrank", (factor_out, factor_in), slice(1, 3), out_channels=5)
    expected = torch.einsum("narp,nrbp->npab", factor_out[1:3], factor_in[1:3])
    assert logits.is_contiguous() and logits.shape == (2, 9, 5, 4)
    assert relative_error(logits, expected) < 1e-14


def test_fused_auto_choice(monkeypatch) -> None:
    """``auto`` keeps small kernels off ``bmm`` even at small outputs; large ones take it there."""
    from awconv.ops import cpu_extension
    from awconv.ops.kernels import FUSED_BMM_MIN_KERNEL_VALUES, choose_fused_kernel

    monkeypatch.setattr(cpu_extension, "available", lambda: False)  # the rule without impl="cpp"
    large, small = 256 * 256 * 9, 64 * 64 * 9
    assert small < FUSED_BMM_MIN_KERNEL_VALUES <= large
    assert choose_fused_kernel("cpu", 8, 7 * 7, large) == "bmm"
    assert choose_fused_kernel("cpu", 8, 7 * 7, small) == "grouped"
    assert choose_fused_kernel("cpu", 8, 28 * 28, large) == "grouped"
    assert choose_fused_kernel("cpu", 1, 7 * 7, large) == "loop"
