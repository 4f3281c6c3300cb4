"""The registered operators torch.ops.awconv.*: opcheck, empty batches, layouts, the kernel table,
double backward against float64 references."""

from __future__ import annotations

import pytest
import torch
from reference import aw_conv2d_reference, fused_reference, relative_error

from awconv import AWConv2d
from awconv.ops import aw_conv2d, aw_conv2d_fused, fused_impls, register_fused_kernel
from awconv.ops.kernels import FUSED_KERNELS

GEOMETRY = ([1, 1], [1, 1], [1, 1])


def fused_tensors(generator: str, batch: int = 2, channels_last: bool = False, requires_grad=True):
    """(input, weight, factors) of a 4 -> 6 channel, 3x3, groups=2 problem in float64."""
    x = torch.randn(batch, 4, 5, 5, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    if generator == "full":
        factors = [torch.randn(batch, 3, 9, dtype=torch.float64), torch.randn(12, 3), torch.randn(12)]
        factors[1:] = [f.double() * 0.5 for f in factors[1:]]
    else:
        factors = [torch.randn(batch, 6, 2, 1, dtype=torch.float64), torch.randn(batch, 2, 2, 1).double()]
    for tensor in (x, weight, *factors):
        tensor.requires_grad_(requires_grad)
    return x, weight, factors


def op_config(generator: str) -> tuple:
    """The operator's arguments after the tensors: generator, gate, geometry, groups, impl, chunk."""
    return (generator, "tanh", *GEOMETRY, 2, "auto", 0)


def op_factors(factors: list) -> tuple:
    """factor_a, factor_b, factor_c (None for lowrank)."""
    return (*factors, None) if len(factors) == 2 else tuple(factors)


@pytest.mark.parametrize(("generator", "batch"), [("full", 3), ("lowrank", 1)])
def test_opcheck_fused(generator, batch):
    """Schema, autograd registration, fake kernel (shapes and strides, channels_last) and AOT
    dispatch with a dynamic batch, forward and backward."""
    x, weight, factors = fused_tensors(generator, batch, channels_last=True)
    arguments = (x, weight, *op_factors(factors), *op_config(generator))
    torch.library.opcheck(torch.ops.awconv.aw_conv2d_fused, arguments)


def test_opcheck_fused_backward():
    x, weight, factors = fused_tensors("full", requires_grad=False)
    grad_output = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    mask = [False, True, False, True, True]
    arguments = (grad_output, x, weight, *op_factors(factors), *op_config("full"), mask)
    torch.library.opcheck(torch.ops.awconv.aw_conv2d_fused_backward, arguments)


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_attention_given(channels_last):
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight, attention = torch.randn(6, 2, 3, 3).double(), torch.randn(2, 6, 2, 3, 3).double()
    for tensor in (x, weight, attention):
        tensor.requires_grad_(True)
    config = (True, *GEOMETRY, 2, "auto")
    torch.library.opcheck(torch.ops.awconv.aw_conv2d, (x, weight, attention, *config))
    grad_output = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.awconv.aw_conv2d_backward,
        (grad_output, x.detach(), weight.detach(), attention.detach(), *config, [True, False, True]),
    )


@pytest.mark.parametrize("generator", ["full", "lowrank"])
def test_empty_batch_gives_empty_output_and_zero_parameter_gradients(generator):
    x, weight, factors = fused_tensors(generator, batch=0)
    out = aw_conv2d_fused(x, weight, factors, None, 1, 1, 1, 2, generator=generator)
    assert out.shape == (0, 6, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.count_nonzero(weight.grad) == 0
    for factor in factors:
        assert factor.grad.shape == factor.shape and torch.count_nonzero(factor.grad) == 0
    attention = torch.randn(0, 6, 2, 3, 3, requires_grad=True)
    out = aw_conv2d(x.detach().float(), weight.detach().float(), attention, padding=1, groups=2)
    assert out.shape == (0, 6, 5, 5)


@pytest.mark.parametrize("generator", ["full", "lowrank"])
def test_channels_last_in_channels_last_out(generator):
    x, weight, factors = fused_tensors(generator, batch=3, channels_last=True)
    out = aw_conv2d_fused(x, weight, factors, None, 1, 1, 1, 2, generator=generator)
    expected = aw_conv2d_fused(x.contiguous(), weight, factors, None, 1, 1, 1, 2, generator=generator)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert relative_error(out, expected) < 1e-14
    out.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_kernel_table_runs_a_registered_kernel_forward_and_backward():
    """A kernel registered under a new name runs behind the same operator: eager, compiled, backward."""
    calls = []
    bmm = FUSED_KERNELS["bmm"]

    def forward(x, weight, factors, problem):
        calls.append("forward")
        return bmm.forward(x, weight, factors, problem)

    def backward(grad_out, x, weight, factors, problem, needs):
        calls.append("backward")
        return bmm.backward(grad_out, x, weight, factors, problem, needs)

    register_fused_kernel("counting", forward, backward)
    try:
        assert "counting" in fused_impls()
        layer = AWConv2d(4, 4, 3, padding=1, impl="counting")
        x = torch.randn(3, 4, 6, 6, requires_grad=True)
        layer(x).sum().backward()
        assert calls == ["forward", "backward"]
        compiled = torch.compile(layer, backend="aot_eager", dynamic=True)
        compiled(x).sum().backward()
        assert calls[2:] == ["forward", "backward"]
        with pytest.raises(ValueError, match="name must be new"):
            register_fused_kernel("counting", forward, backward)
    finally:
        FUSED_KERNELS.pop("counting")


def test_kernel_for_another_device_is_refused_in_one_line():
    bmm = FUSED_KERNELS["bmm"]
    register_fused_kernel("cuda_only", bmm.forward, bmm.backward, device_types=("cuda",))
    try:
        layer = AWConv2d(4, 4, 3, padding=1, impl="cuda_only")
        with pytest.raises(ValueError, match="impl='cuda_only' runs on cuda tensors, got cpu"):
            layer(torch.randn(2, 4, 6, 6))
    finally:
        FUSED_KERNELS.pop("cuda_only")


@pytest.mark.parametrize("generator", ["full", "lowrank"])
def test_double_backward_matches_float64_reference(generator):
    """A gradient penalty: grad of ||d out / d x||^2 w.r.t. every tensor, against the reference."""
    x, weight, factors = fused_tensors(generator, batch=2)
    tensors = [x, weight, *factors]

    def penalty(function):
        out = function(x, weight, factors)
        (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), tensors)

    got = penalty(lambda x, w, f: aw_conv2d_fused(x, w, f, None, 1, 1, 1, 2, generator=generator))
    expected = penalty(lambda x, w, f: fused_reference(generator, "tanh", x, w, f, 1, 1, 1, 2))
    for a, b in zip(got, expected, strict=True):
        assert relative_error(a, b) < 1e-10


@pytest.mark.parametrize("frozen", [None, "weight", "attention"])
def test_double_backward_attention_given_matches_float64_reference(frozen):
    """Also with one tensor that needs no gradient: the others' gradients keep their order."""
    x, weight, _ = fused_tensors("full", batch=2)
    attention = torch.randn(2, 6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    tensors = [t for name, t in (("x", x), ("weight", weight), ("attention", attention)) if name != frozen]
    if frozen:
        {"weight": weight, "attention": attention}[frozen].requires_grad_(False)

    def penalty(function):
        (grad_x,) = torch.autograd.grad(function(x, weight, attention).square().sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), tensors)

    got = penalty(lambda x, w, a: aw_conv2d(x, w, a, None, 2, 1, 1, 2))
    expected = penalty(lambda x, w, a: aw_conv2d_reference(x, w, a, None, 2, 1, 1, 2))
    for a, b in zip(got, expected, strict=True):
        assert relative_error(a, b) < 1e-10
