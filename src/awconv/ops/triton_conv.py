"""The fused AW-convolution in Triton: ``impl="triton"`` of ``aw_conv2d_fused``, for CUDA tensors.

The per-sample convolution reads the weight and the attention's logits (or the low-rank factors
they are made of) tile by tile and makes the modulated kernels ``(1 + gate(z)) * W`` in registers
(``awconv.ops.triton_kernels``): the N x C2 x C1/g x kh x kw modulated kernels are never written,
in forward or backward. Backward recomputes them in registers from the same inputs.

Where the logits come from, per generator (factors as in ``awconv.ops.fused``):

* ``"lowrank"``: the kernels take ``factor_out`` and ``factor_in`` and form ``z`` per tile (R
  multiply-adds per kernel value); nothing of the attention's size exists at any time.
* ``"full"``: one GEMM over the batch, ``logits = hidden^T @ head_weight^T + head_bias``, writes
  the logits (N, P, C2, C1/g) in the compute dtype, and the kernels read them. Forming the head
  inside the convolution would make it a matrix-vector product per sample and tile, reading
  ``head_weight`` (d times the size of one sample's logits) once per sample instead of once per
  batch; the GEMM does the same multiply-adds at full speed. The logits are the one tensor of the
  attention's size: written once, read once per pixel tile, freed after the call. Backward
  writes their gradient (the kernel's epilogue) and two GEMMs give the head's gradients.

Entry points, on plain tensors after ``prepare_geometry`` (symmetric zero padding), all in one
dtype among float32, bfloat16 and float16 (``compute_dtype`` of the caller decides it):

* ``triton_forward(x, weight, factors, generator, gate, stride, padding, dilation, groups)``
* ``triton_backward(grad_out, x, weight, factors, generator, gate, stride, padding, dilation,
  groups, needs)``
* ``aw_conv2d_triton(...)``: the two joined as an autograd function (what ``aw_conv2d_fused``
  calls), saving only ``x``, ``weight`` and the factors for backward.

float32 inputs use TF32 tensor cores unless ``torch.get_float32_matmul_precision()`` is
``"highest"``, as ``torch.matmul`` does. Gradients of the weight and of ``lowrank``'s factors
(and of ``full``'s logits when P = 1) are summed with float32 atomic adds, so their last bits
depend on the order the GPU runs the programs in.

Testing without a GPU: with ``TRITON_INTERPRET=1`` in the environment when this module is first
imported, the kernels run in Triton's interpreter on CPU tensors (slowly; tests use tiny shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
from torch import Tensor

from awconv.ops import triton_kernels as kernels
from awconv.ops.geometry import output_size

__all__ = ["INTERPRETED", "aw_conv2d_triton", "triton_backward", "triton_forward"]

Pair = tuple[int, int]

# True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = type(kernels.forward_kernel).__name__ == "InterpretedFunction"

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Weight-gradient programs to aim for when splitting the batch: a few waves on a large GPU.
_TARGET_PROGRAMS = 1024


class _Sources(NamedTuple):
    """What the kernels make the logits from: tensors ``a``, ``b``, their strides and the rank.

    ``full``: a = logits (N, P, C2, C1/g), b = a (unused), rank 0. ``lowrank``: a = factor_out
    (N, C2, R, P), b = factor_in (N, R, C1/g, P). A tap axis of length 1 has stride 0.
    """

    a: Tensor
    b: Tensor
    a_strides: tuple[int, int, int, int]
    b_strides: tuple[int, int, int, int]
    rank: int


def _check_inputs(x: Tensor, weight: Tensor, factors: Sequence[Tensor]) -> None:
    if not INTERPRETED and x.device.type != "cuda":
        raise ValueError(
            f"impl='triton' needs CUDA tensors, got input on {x.device}; for tests, set "
            "TRITON_INTERPRET=1 before awconv.ops.triton_conv is imported to run it on the CPU"
        )
    if x.dtype not in _DTYPES:
        raise ValueError(f"impl='triton' computes in float32, bfloat16 or float16, got input of {x.dtype}")
    for name, tensor in (("weight", weight), *((f"factors[{i}]", f) for i, f in enumerate(factors))):
        if tensor.dtype != x.dtype or tensor.device != x.device:
            raise ValueError(
                f"{name} must have the input's dtype {x.dtype} and device {x.device}, "
                f"got {tensor.dtype} on {tensor.device}"
            )


def _precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision: TF32 for float32 unless matmul precision is "highest"."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _block(size: int, smallest: int, largest: int) -> int:
    """The power of two covering ``size``, clamped to [smallest, largest]."""
    return max(smallest, min(largest, triton.next_power_of_2(size)))


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _tap_major(weight: Tensor) -> Tensor:
    """The weight (C2, C1/g, kh, kw) stored tap-major, input channels contiguous (a small copy)."""
    return weight.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


def _strides(t: Tensor, tap_dim: int) -> tuple[int, int, int, int]:
    strides = list(t.stride())
    if t.shape[tap_dim] == 1:
        strides[tap_dim] = 0
    return tuple(strides)


def _sources(generator: str, factors: Sequence[Tensor], out_channels: int) -> _Sources:
    if generator == "full":
        hidden, head_weight, head_bias = factors
        rows = hidden.transpose(1, 2).reshape(-1, hidden.shape[1])  # (N * P, d), small
        logits = torch.addmm(head_bias, rows, head_weight.t())  # one GEMM, bias in its epilogue
        logits = logits.view(hidden.shape[0], hidden.shape[2], out_channels, -1)  # (N, P, C2, C1/g)
        strides = _strides(logits, 1)
        return _Sources(logits, logits, strides, strides, 0)
    factor_out, factor_in = factors
    return _Sources(
        factor_out, factor_in, _strides(factor_out, 3), _strides(factor_in, 3), factor_out.shape[2]
    )


def _constants(weight: Tensor, gate: str, generator: str, stride: Pair, padding: Pair, dilation: Pair, dtype):
    """The kernels' compile-time arguments shared by all three."""
    return {
        "KH": weight.shape[2],
        "KW": weight.shape[3],
        "SH": stride[0],
        "SW": stride[1],
        "PH": padding[0],
        "PW": padding[1],
        "DH": dilation[0],
        "DW": dilation[1],
        "GATE": kernels.GATE_CODES[gate],
        "LOWRANK": generator == "lowrank",
        "PRECISION": _precision(dtype),
        "UPCAST": INTERPRETED and dtype == torch.bfloat16,
    }


def _tiles(pixels: int, channels: int, reduced: int, dtype: torch.dtype) -> dict[str, int]:
    """Block sizes and warps of a pixel x channel tile reducing over ``reduced`` channels."""
    block_m = 128 if pixels >= 1024 else 64
    block_n = _block(channels, 16, 128)
    block_k = _block(reduced, 16, 32 if dtype == torch.float32 else 64)
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_K": block_k,
        "num_warps": 8 if block_m * block_n >= 128 * 128 else 4,
    }


def _grad_weight_tiles(
    out_per_group: int, in_per_group: int, pixels: int, dtype: torch.dtype
) -> dict[str, int]:
    """Block sizes and warps of the weight-gradient kernel's (C2/g x C1/g) tile, reducing over pixels.

    Three such float32 blocks live at once (the GEMM's, dW's and the weight's), so they stay at 64.
    """
    block_m, block_n = _block(out_per_group, 16, 64), _block(in_per_group, 16, 64)
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_K": _block(pixels, 16, 32 if dtype == torch.float32 else 64),
        "num_warps": 8 if block_m * block_n >= 64 * 64 else 4,
    }


def triton_forward(
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    generator: str,
    gate: str,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
) -> Tensor:
    """The fused AW-convolution's forward, modulated kernels made in registers.

    Args:
        x: (N, C1, H, W); any layout (NHWC is read without a copy).
        weight: (C2, C1/groups, kh, kw).
        factors: the logit factors of ``awconv.ops.fused`` for ``generator``.
        generator: ``"full"`` or ``"lowrank"``.
        gate: ``"tanh"``, ``"sigmoid"`` or ``"none"``.
        stride, padding, dilation: pairs; padding is symmetric zero padding.
        groups: the convolution's groups.

    Returns:
        (N, C2, H_out, W_out) in x's dtype, channels_last.
    """
    _check_inputs(x, weight, factors)
    x = _channels_last(x)
    (batch, _, height, width), (out_channels, in_per_group, kh, kw) = x.shape, weight.shape
    out_h = output_size(height + 2 * padding[0], kh, stride[0], dilation[0])
    out_w = output_size(width + 2 * padding[1], kw, stride[1], dilation[1])
    out = torch.empty(
        (batch, out_channels, out_h, out_w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last
    )
    sources = _sources(generator, factors, out_channels)
    out_per_group = out_channels // groups
    tiles = _tiles(out_h * out_w, out_per_group, in_per_group, x.dtype)
    programs = (
        triton.cdiv(out_h * out_w, tiles["BLOCK_M"])
        * triton.cdiv(out_per_group, tiles["BLOCK_N"])
        * batch
        * groups
    )
    weight = _tap_major(weight)
    kernels.forward_kernel[(programs,)](
        x, weight, sources.a, sources.b, out,
        height, width, in_per_group, out_per_group, out_h, out_w, groups, sources.rank,
        *x.stride(), *weight.stride(), *sources.a_strides, *sources.b_strides, *out.stride(),
        **_constants(weight, gate, generator, stride, padding, dilation, x.dtype), **tiles,
    )  # fmt: skip
    return out


def _phase_taps(phase: int, pad: int, dilation: int, stride: int, kernel: int) -> tuple[int, int]:
    """The first tap i with (phase + pad - i * dilation) divisible by stride, and the step to the next.

    The first is ``kernel`` (no tap) when none reaches the phase.
    """
    first = next((i for i in range(kernel) if (phase + pad - i * dilation) % stride == 0), kernel)
    return first, stride // math.gcd(stride, dilation)


def _grad_input(
    grad_out: Tensor, x: Tensor, weight: Tensor, sources: _Sources, constants, groups: int
) -> Tensor:
    (batch, _, height, width), (out_channels, in_per_group, kh, kw) = x.shape, weight.shape
    (stride_h, stride_w), (pad_h, pad_w) = (
        (constants["SH"], constants["SW"]),
        (constants["PH"], constants["PW"]),
    )
    dil_h, dil_w = constants["DH"], constants["DW"]
    out_per_group = out_channels // groups
    grad_x = torch.empty_like(x, memory_format=torch.channels_last)
    for phase_h in range(min(stride_h, height)):
        first_i, step_i = _phase_taps(phase_h, pad_h, dil_h, stride_h, kh)
        phase_height = triton.cdiv(height - phase_h, stride_h)
        for phase_w in range(min(stride_w, width)):
            first_j, step_j = _phase_taps(phase_w, pad_w, dil_w, stride_w, kw)
            phase_width = triton.cdiv(width - phase_w, stride_w)
            tiles = _tiles(phase_height * phase_width, in_per_group, out_per_group, x.dtype)
            programs = (
                triton.cdiv(phase_height * phase_width, tiles["BLOCK_M"])
                * triton.cdiv(in_per_group, tiles["BLOCK_N"])
                * batch
                * groups
            )
            kernels.grad_input_kernel[(programs,)](
                grad_out, weight, sources.a, sources.b, grad_x,
                height, width, in_per_group, out_per_group, grad_out.shape[2], grad_out.shape[3], groups,
                sources.rank, phase_h, phase_w, first_i, step_i, first_j, step_j, phase_height, phase_width,
                *grad_out.stride(), *weight.stride(), *sources.a_strides, *sources.b_strides,
                *grad_x.stride(), **constants, **tiles,
            )  # fmt: skip
    return grad_x


def _grad_weight_and_logits(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    sources: _Sources,
    constants,
    groups: int,
    need_weight: bool,
    need_logits: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Runs the weight-gradient kernel.

    Returns:
        grad weight (C2, C1/g, kh, kw) float32 or None; for ``full`` the logits' gradient
        (N, P, C2, C1/g) and None; for ``lowrank`` the factors' gradients, float32; None where
        ``need_logits`` is False.
    """
    (batch, _, height, width), (out_channels, in_per_group, kh, kw) = x.shape, weight.shape
    out_per_group = out_channels // groups
    grad_w = torch.zeros((kh, kw, out_channels, in_per_group), device=x.device, dtype=torch.float32)
    grad_w = grad_w.permute(2, 3, 0, 1)
    grad_a = grad_b = None
    if need_logits and constants["LOWRANK"]:
        grad_a = torch.zeros_like(sources.a, dtype=torch.float32)
        grad_b = torch.zeros_like(sources.b, dtype=torch.float32)
        ga_strides, gb_strides = _strides(grad_a, 3), _strides(grad_b, 3)
    elif need_logits:
        shared = sources.a.shape[1] == 1  # one logit for all taps: summed over them atomically
        grad_a = (torch.zeros_like if shared else torch.empty_like)(
            sources.a, dtype=torch.float32 if shared else sources.a.dtype
        )
        ga_strides = gb_strides = _strides(grad_a, 1)
    else:
        ga_strides = gb_strides = (0, 0, 0, 0)
    tiles = _grad_weight_tiles(out_per_group, in_per_group, grad_out.shape[2] * grad_out.shape[3], x.dtype)
    programs = (
        triton.cdiv(out_per_group, tiles["BLOCK_M"])
        * triton.cdiv(in_per_group, tiles["BLOCK_N"])
        * kh
        * kw
        * groups
    )
    samples_per_program = triton.cdiv(batch, min(batch, triton.cdiv(_TARGET_PROGRAMS, programs)))
    splits = triton.cdiv(batch, samples_per_program)
    kernels.grad_weight_kernel[(programs, splits)](
        grad_out, x, weight, sources.a, sources.b, grad_w,
        grad_w if grad_a is None else grad_a, grad_w if grad_b is None else grad_b,
        batch, height, width, in_per_group, out_per_group, grad_out.shape[2], grad_out.shape[3], groups,
        sources.rank, samples_per_program,
        *grad_out.stride(), *x.stride(), *weight.stride(), *sources.a_strides, *sources.b_strides,
        *grad_w.stride(), *ga_strides, *gb_strides,
        NEED_WEIGHT=need_weight, NEED_LOGITS=need_logits,
        ATOMIC_LOGITS=not constants["LOWRANK"] and sources.a.shape[1] == 1,
        **constants, **tiles,
    )  # fmt: skip
    return (grad_w if need_weight else None), grad_a, grad_b


def _head_backward(
    factors: Sequence[Tensor], grad_logits: Tensor, needs: Sequence[bool]
) -> list[Tensor | None]:
    """Gradients of hidden (N, d, P), head_weight (K, d) and head_bias (K,) from grad logits (N, P, ...)."""
    hidden, head_weight, _ = factors
    grad_flat = grad_logits.to(hidden.dtype).flatten(2)  # (N, P, K)
    grads: list[Tensor | None] = [None, None, None]
    if needs[0]:
        grads[0] = torch.matmul(grad_flat, head_weight).transpose(1, 2)
    if needs[1]:
        rows = hidden.transpose(1, 2).reshape(-1, hidden.shape[1])  # (N * P, d)
        grads[1] = grad_flat.reshape(-1, grad_flat.shape[-1]).t() @ rows
    if needs[2]:
        grads[2] = grad_flat.sum(dim=(0, 1), dtype=torch.float32).to(hidden.dtype)
    return grads


def triton_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    generator: str,
    gate: str,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    needs: Sequence[bool],
) -> tuple[Tensor | None, Tensor | None, list[Tensor | None]]:
    """Gradients of ``triton_forward``, modulated kernels made in registers again.

    Args:
        grad_out: (N, C2, H_out, W_out), the output's gradient.
        x, weight, factors, generator, gate, stride, padding, dilation, groups: as ``triton_forward``.
        needs: which gradients to compute: (x, weight, *factors).

    Returns:
        ``(grad_x (N, C1, H, W) channels_last, grad_weight (C2, C1/g, kh, kw), [grad of each
        factor])``, in the inputs' dtype; None where not needed.
    """
    _check_inputs(x, weight, factors)
    x, grad_out = _channels_last(x), _channels_last(grad_out.to(x.dtype))
    sources = _sources(generator, factors, weight.shape[0])
    constants = _constants(weight, gate, generator, stride, padding, dilation, x.dtype)
    tap_weight = _tap_major(weight)
    grad_x = _grad_input(grad_out, x, tap_weight, sources, constants, groups) if needs[0] else None
    need_logits = any(needs[2:])
    grad_weight, grad_factors = None, [None] * len(factors)
    if needs[1] or need_logits:
        grad_weight, grad_a, grad_b = _grad_weight_and_logits(
            grad_out, x, tap_weight, sources, constants, groups, needs[1], need_logits
        )
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if need_logits and generator == "full":
            grad_factors = _head_backward(factors, grad_a, needs[2:])
        elif need_logits:
            grad_factors = [
                g.to(f.dtype) if need else None
                for g, f, need in zip((grad_a, grad_b), factors, needs[2:], strict=True)
            ]
    return grad_x, grad_weight, grad_factors


class _TritonAWConv2dFunction(torch.autograd.Function):
    """triton_forward and triton_backward; saves only x, the weight and the logit factors."""

    @staticmethod
    def forward(ctx, x, weight, generator, gate, stride, padding, dilation, groups, *factors):
        out = triton_forward(x, weight, factors, generator, gate, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, *factors)
        ctx.config = (generator, gate, stride, padding, dilation, groups)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], *ctx.needs_input_grad[8:])
        grad_x, grad_weight, grad_factors = triton_backward(grad_out, x, weight, factors, *ctx.config, needs)
        return (grad_x, grad_weight, None, None, None, None, None, None, *grad_factors)


@torch.compiler.disable
def aw_conv2d_triton(
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    generator: str,
    gate: str,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
) -> Tensor:
    """``triton_forward`` with autograd: what ``aw_conv2d_fused(..., impl="triton")`` runs.

    Arguments as ``triton_forward``; x is made channels_last once, here, so that the copy (if any)
    is what backward keeps. Under ``torch.compile`` it runs eagerly (a graph break).

    Returns:
        (N, C2, H_out, W_out), channels_last.
    """
    return _TritonAWConv2dFunction.apply(
        _channels_last(x), weight, generator, gate, stride, padding, dilation, groups, *factors
    )
