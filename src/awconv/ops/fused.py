"""Fused AW-convolution: the generator's last layer, the gate, the modulation and the convolution.

The ``full`` attention has N * C2 * C1/g * kh * kw values, in deep layers far more than the
convolution's input and output together, so producing, storing and re-reading it dominates the
cost on a CPU. ``aw_conv2d_fused`` takes the small tensors the attention is made from (its
*logit factors*) instead of the attention, and inside one autograd function

* generates the modulation factor ``1 + attention`` with one matrix product over the whole batch
  (reading the generator's head once), gates it and multiplies the weight into it in place;
* convolves; on the ``bmm`` path directly in the tap-major layout the matrix product produced;
* keeps only the input, the weight and the logit factors for backward, and generates the factor
  again there, so no tensor of the attention's size outlives the call.

Logit factors per generator, with P = kh * kw (one value per tap) or P = 1 (shared by the taps):

* ``"full"``: ``(hidden (N, d, P), head_weight (C2 * C1/g, d), head_bias (C2 * C1/g,))``, and
  ``logits[n, :, p] = head_weight @ hidden[n, :, p] + head_bias``.
* ``"lowrank"``: ``(factor_out (N, C2, R, P), factor_in (N, R, C1/g, P))``, and
  ``logits[n, :, :, p] = factor_out[n, :, :, p] @ factor_in[n, :, :, p]``.

Then ``attention = gate(logits)`` and ``output[n] = conv2d(input[n], (1 + attention[n]) * weight)``.
Inside, tensors of the attention's size are *tap-major*: (n, T, C2, C1/g), T = kh * kw.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.ops.geometry import IntOrPair, prepare_geometry
from awconv.ops.paths import IMPLS, choose_impl, per_sample_conv, per_sample_conv_backward
from awconv.ops.precision import compute_dtype
from awconv.ops.validation import check_conv_shapes, check_tensors

__all__ = ["FUSED_GATES", "FUSED_GENERATORS", "FUSED_IMPLS", "aw_conv2d_fused"]

FUSED_GENERATORS = ("full", "lowrank")
FUSED_GATES = ("tanh", "sigmoid", "none")
# The paths, plus "triton": the Triton kernels of awconv.ops.triton_conv (CUDA; opt-in, "auto"
# never picks it).
FUSED_IMPLS = (*IMPLS, "triton")


def _logits(kind: str, factors: Sequence[Tensor], samples: slice, out_channels: int) -> Tensor:
    """Logits of some samples, tap-major: (n, P, C2, C1/g), new memory."""
    if kind == "full":
        hidden, head_weight, head_bias = factors
        hidden = hidden[samples].transpose(1, 2)  # (n, P, d)
        logits = F.linear(hidden, head_weight, head_bias)  # one GEMM over all n * P rows
        return logits.view(hidden.shape[0], hidden.shape[1], out_channels, -1)
    factor_out, factor_in = factors
    # A batched matrix product (n * P of them) writes the logits once, contiguous. einsum would
    # broadcast-multiply for R = 1 and leave a strided result that every later pass copies.
    return torch.matmul(factor_out[samples].permute(0, 3, 1, 2), factor_in[samples].permute(0, 3, 1, 2))


def _logits_backward(
    kind: str, factors: Sequence[Tensor], grads: list[Tensor | None], samples: slice, grad_logits: Tensor
) -> None:
    """Adds the gradients of some samples to ``grads`` (zero-initialised; None where unneeded).

    Args:
        grad_logits: (n, P, C2, C1/g).
    """
    if kind == "full":
        hidden, head_weight, _ = factors
        grad_flat = grad_logits.flatten(2)  # (n, P, C2 * C1/g)
        if grads[0] is not None:
            grads[0][samples] += torch.matmul(grad_flat, head_weight).transpose(1, 2)
        if grads[1] is not None:
            rows = hidden[samples].transpose(1, 2).reshape(-1, hidden.shape[1])  # (n * P, d)
            grads[1] += grad_flat.reshape(-1, grad_flat.shape[-1]).t() @ rows
        if grads[2] is not None:
            grads[2] += grad_flat.sum(dim=(0, 1))
        return
    factor_out, factor_in = factors
    if grads[0] is not None:
        grads[0][samples] += torch.einsum("npab,nrbp->narp", grad_logits, factor_in[samples])
    if grads[1] is not None:
        grads[1][samples] += torch.einsum("npab,narp->nrbp", grad_logits, factor_out[samples])


class _GatePlan(NamedTuple):
    """How a gate becomes the factor ``m = 1 + gate(z)`` in few passes and without cancellation.

    ``q = activation(logit_scale * z)`` and ``m = weight_scale * q + offset``; the scales are applied
    to small tensors (the logit factors, the weight), never to the attention-sized ones. For tanh,
    ``1 + tanh(z) = 2 sigmoid(2 z)``, which also keeps its relative precision where tanh nears -1.
    """

    logit_scale: float
    weight_scale: float
    offset: bool
    sigmoid: bool


_GATE_PLANS = {
    "tanh": _GatePlan(logit_scale=2.0, weight_scale=2.0, offset=False, sigmoid=True),
    "sigmoid": _GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=True),
    "none": _GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=False),
}

# The factors that carry the logits' scale: hidden and bias (full), factor_out (lowrank).
_SCALED_FACTORS = {"full": (0, 2), "lowrank": (0,)}


def _scale_factors(kind: str, factors: Sequence[Tensor], scale: float) -> list[Tensor]:
    """The logit factors with the logits multiplied by ``scale`` (small tensors only)."""
    return [f * scale if i in _SCALED_FACTORS[kind] and scale != 1 else f for i, f in enumerate(factors)]


def _tap_major(weight: Tensor) -> Tensor:
    """(C2, C1/g, kh, kw) -> (T, C2, C1/g), contiguous."""
    return weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1]).contiguous()


def _kernels(
    kind: str, plan: _GatePlan, factors, tap_weight: Tensor, samples: slice, in_place: bool
) -> tuple[Tensor, Tensor]:
    """Gate values q (n, P, C2, C1/g) and modulated kernels (n, T, C2, C1/g) of some samples.

    ``factors`` are already scaled by ``plan.logit_scale``. With ``in_place`` and P = T the kernels
    overwrite q (forward needs no more): one pass for the gate, one for the modulation.
    """
    gated = _logits(kind, factors, samples, tap_weight.shape[1])
    if plan.sigmoid:
        gated.sigmoid_()
    out = gated if in_place and gated.shape[1] == tap_weight.shape[0] else None
    if plan.offset:  # W (1 + q)
        return gated, torch.addcmul(tap_weight, tap_weight, gated, out=out)
    return gated, torch.mul(tap_weight * plan.weight_scale, gated, out=out)


def _standard(kernels: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Tap-major kernels (n, T, C2, C1/g) -> (n, C2, C1/g, kh, kw), contiguous."""
    n, _, c2, c1g = kernels.shape
    return kernels.permute(0, 2, 3, 1).reshape(n, c2, c1g, *kernel_size)


def _tap_columns(x: Tensor, kernel_size: tuple[int, int], geometry, groups: int) -> Tensor:
    """The input's columns per tap and group: (n, T, g, C1/g, L)."""
    stride, padding, dilation = geometry
    columns = F.unfold(x, kernel_size, dilation, padding, stride)  # (n, C1 * T, L), channel-major
    n, taps = x.shape[0], kernel_size[0] * kernel_size[1]
    columns = columns.view(n, groups, -1, taps, columns.shape[-1])  # (n, g, C1/g, T, L)
    return columns.permute(0, 3, 1, 2, 4).contiguous()


def _bmm_tap_major(columns: Tensor, kernels: Tensor, groups: int) -> Tensor:
    """Sum over taps of kernels[n, t] @ columns[n, t]: (n, T, g, C1/g, L), (n, T, C2, C1/g) -> (n, C2, L)."""
    n, taps, c2, c1g = kernels.shape
    per_tap = torch.matmul(kernels.view(n, taps, groups, c2 // groups, c1g), columns)  # (n, T, g, C2/g, L)
    return per_tap.sum(dim=1).view(n, c2, -1)


class _FusedAWConv2dFunction(torch.autograd.Function):
    """Generate, gate, modulate and convolve chunk by chunk; regenerate the factor in backward."""

    @staticmethod
    def forward(ctx, x, weight, kind, gate, path, geometry, groups, chunk, out_size, *factors):
        (out_channels, _, kh, kw), batch = weight.shape, x.shape[0]
        tap_weight, plan = _tap_major(weight), _GATE_PLANS[gate]
        scaled = _scale_factors(kind, factors, plan.logit_scale)
        outputs = []
        for start in range(0, batch, chunk):
            samples = slice(start, min(start + chunk, batch))
            _, kernels = _kernels(kind, plan, scaled, tap_weight, samples, in_place=True)
            if path == "bmm":
                columns = _tap_columns(x[samples], (kh, kw), geometry, groups)
                out = _bmm_tap_major(columns, kernels, groups).view(-1, out_channels, *out_size)
            else:
                out = per_sample_conv(path, x[samples], _standard(kernels, (kh, kw)), *geometry, groups)
            outputs.append(out)
        ctx.save_for_backward(x, weight, *factors)
        ctx.config = (kind, gate, path, geometry, groups, chunk)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        kind, gate, path, geometry, groups, chunk = ctx.config
        needs = ctx.needs_input_grad
        (out_channels, in_per_group, kh, kw), batch = weight.shape, x.shape[0]
        tap_weight, plan = _tap_major(weight), _GATE_PLANS[gate]
        scaled = _scale_factors(kind, factors, plan.logit_scale)
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if needs[0] else None
        grad_tap_weight = torch.zeros_like(tap_weight) if needs[1] else None
        factor_grads = [
            torch.zeros_like(f) if need else None for f, need in zip(factors, needs[9:], strict=True)
        ]
        stride, padding, dilation = geometry
        for start in range(0, batch, chunk):
            samples = slice(start, min(start + chunk, batch))
            gated, kernels = _kernels(kind, plan, scaled, tap_weight, samples, in_place=False)
            n = kernels.shape[0]
            if path == "bmm":
                columns = _tap_columns(x[samples], (kh, kw), geometry, groups)  # (n, T, g, C1/g, L)
                grad_block = grad_out[samples].view(n, 1, groups, out_channels // groups, -1)
                grad_kernels = torch.matmul(grad_block, columns.transpose(-1, -2)).view_as(kernels)
                if grad_x is not None:
                    grouped_kernels = kernels.view(n, -1, groups, out_channels // groups, in_per_group)
                    grad_columns = torch.matmul(
                        grouped_kernels.transpose(-1, -2), grad_block
                    )  # (n,T,g,C1/g,L)
                    grad_columns = grad_columns.permute(0, 2, 3, 1, 4).reshape(n, -1, grad_columns.shape[-1])
                    grad_x[samples] = F.fold(grad_columns, x.shape[2:], (kh, kw), dilation, padding, stride)
            else:
                chunk_grad_x, grad_standard = per_sample_conv_backward(
                    path, x[samples], _standard(kernels, (kh, kw)), grad_out[samples], *geometry, groups
                )
                if grad_x is not None:
                    grad_x[samples] = chunk_grad_x
                grad_kernels = grad_standard.flatten(3).permute(0, 3, 1, 2)  # (n, T, C2, C1/g), a view
            if grad_tap_weight is not None:  # dL/dW = sum_n dL/dK * (weight_scale q + offset)
                product = torch.mul(grad_kernels, gated, out=kernels).sum(dim=0)  # reuses a free buffer
                grad_tap_weight.add_(product, alpha=plan.weight_scale)
                if plan.offset:
                    grad_tap_weight += grad_kernels.sum(dim=0)
            grad_gated = grad_kernels.mul_(
                tap_weight if plan.weight_scale == 1 else tap_weight * plan.weight_scale
            )
            if gated.shape[1] == 1:
                grad_gated = grad_gated.sum(dim=1, keepdim=True)
            if plan.sigmoid:  # dq/dz' = q (1 - q), using up q
                grad_gated.mul_(gated).mul_(gated.neg_().add_(1))
            _logits_backward(kind, scaled, factor_grads, samples, grad_gated)
        for index in _SCALED_FACTORS[kind]:  # the chain rule through the logits' scale
            if factor_grads[index] is not None and plan.logit_scale != 1:
                factor_grads[index].mul_(plan.logit_scale)
        grad_weight = None
        if grad_tap_weight is not None:
            grad_weight = grad_tap_weight.view(kh, kw, out_channels, in_per_group).permute(2, 3, 0, 1)
        return (grad_x, grad_weight, None, None, None, None, None, None, None, *factor_grads)


def _check_factors(kind: str, factors: Sequence[Tensor], x: Tensor, weight: Tensor) -> None:
    batch, (c2, c1g, kh, kw) = x.shape[0], weight.shape
    names = ("hidden", "head_weight", "head_bias") if kind == "full" else ("factor_out", "factor_in")
    if not isinstance(factors, Sequence) or len(factors) != len(names):
        raise ValueError(f"factors must be a sequence ({', '.join(names)}) for generator={kind!r}")
    check_tensors(**dict(zip(names, factors, strict=True)))
    taps = factors[0].shape[-1] if factors[0].dim() >= 3 else None
    if taps not in (1, kh * kw):
        raise ValueError(
            f"{names[0]} must end in P = 1 or P = kh*kw = {kh * kw} taps, got shape {tuple(factors[0].shape)}"
        )
    if kind == "full":
        d = factors[0].shape[1]
        expected = {"hidden": (batch, d, taps), "head_weight": (c2 * c1g, d), "head_bias": (c2 * c1g,)}
    else:
        rank = factors[0].shape[2] if factors[0].dim() == 4 else -1
        expected = {"factor_out": (batch, c2, rank, taps), "factor_in": (batch, rank, c1g, taps)}
    for name, factor in zip(names, factors, strict=True):
        if tuple(factor.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(factor.shape)}")


def _run_triton(
    input: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    generator: str,
    gate: str,
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    groups: int,
    chunk_size: int | None,
) -> Tensor:
    """``impl="triton"``: ``awconv.ops.triton_conv.aw_conv2d_triton``, imported only here (triton
    is optional), in the dtype ``compute_dtype`` picks. Shapes as ``aw_conv2d_fused``'s."""
    if chunk_size is not None:
        raise ValueError(
            f"chunk_size applies to the CPU paths, not impl='triton' (which stores no modulated "
            f"kernels), got chunk_size={chunk_size!r}"
        )
    try:
        triton_conv = importlib.import_module("awconv.ops.triton_conv")
    except ModuleNotFoundError as error:
        if error.name != "triton":
            raise
        raise ImportError("impl='triton' needs the triton package (pip install triton)") from error
    with compute_dtype(input, weight, *factors) as (input, weight, *factors):
        return triton_conv.aw_conv2d_triton(input, weight, factors, generator, gate, *geometry, groups)


def aw_conv2d_fused(
    input: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    generator: str = "full",
    gate: str = "tanh",
    impl: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """AW-convolution with the attention generated inside from its logit factors.

    Equal to ``aw_conv2d(input, weight, gate(logits).expand(N, C2, C1/g, kh, kw), bias, ...)``
    with the logits of the module docstring, but the attention is never stored.

    Args:
        input: (N, C1, H, W).
        weight: (C2, C1/groups, kh, kw).
        factors: ``(hidden, head_weight, head_bias)`` for ``generator="full"``, ``(factor_out,
            factor_in)`` for ``"lowrank"``; shapes in the module docstring.
        bias: (C2,) or None.
        stride: int or (sh, sw).
        padding: int, (ph, pw), ``"same"`` or ``"valid"`` (zero padding).
        dilation: int or (dh, dw).
        groups: blocked connections from input to output channels.
        generator: ``"full"`` or ``"lowrank"``.
        gate: ``"tanh"``, ``"sigmoid"`` or ``"none"``.
        chunk_size: samples whose attention exists at once; None is the whole batch. Smaller
            chunks bound the memory but re-read the generator's head once per chunk, which for
            ``"full"`` holds about 3.6x as many values as the weight (d=32, 3x3), so they are slower.
        impl: convolution path, as in ``aw_conv2d``; ``"bmm"`` works on the tap-major kernels
            directly, the others reorder them first. ``"triton"`` (CUDA tensors, float32, bfloat16
            or float16) runs the kernels of ``awconv.ops.triton_conv``, which never write the
            modulated kernels; ``chunk_size`` must be None with it.

    Returns:
        (N, C2, H_out, W_out).
    """
    if generator not in FUSED_GENERATORS:
        raise ValueError(f"generator must be one of {FUSED_GENERATORS}, got {generator!r}")
    if gate not in FUSED_GATES:
        raise ValueError(f"gate must be one of {FUSED_GATES}, got {gate!r}")
    if impl not in FUSED_IMPLS:
        raise ValueError(f"impl must be one of {FUSED_IMPLS}, got {impl!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    check_tensors(input=input, weight=weight, bias=bias)
    check_conv_shapes(input, weight, bias, groups)
    _check_factors(generator, factors, input, weight)
    input, geometry, out_size = prepare_geometry(input, weight.shape[2:], stride, padding, dilation)
    if impl == "triton":
        out = _run_triton(input, weight, factors, generator, gate, geometry, groups, chunk_size)
        return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)
    chunk_size = min(chunk_size or input.shape[0], input.shape[0])
    path = choose_impl(chunk_size, out_size[0] * out_size[1]) if impl == "auto" else impl
    with compute_dtype(input, weight, *factors) as (input, weight, *factors):
        out = _FusedAWConv2dFunction.apply(
            input.contiguous(),
            weight,
            generator,
            gate,
            path,
            geometry,
            groups,
            chunk_size,
            out_size,
            *factors,
        )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
