"""Fused AW-convolution: the generator's last layer, the gate, the modulation and the convolution.

The ``full`` attention has N * C2 * C1/g * kh * kw values, in deep layers far more than the
convolution's input and output together, so producing, storing and re-reading it dominates the
cost on a CPU. ``aw_conv2d_fused`` takes the small tensors the attention is made from (its
*logit factors*) instead of the attention, and inside one autograd function

* generates the attention (for the whole batch, or for ``chunk_size`` samples at a time to bound
  the memory it takes), modulates the weights in place and convolves;
* keeps only the input, the weight and the logit factors for backward, and generates the
  attention again there, so no tensor of the attention's size outlives the call.

Logit factors per generator, with P = kh * kw (one value per tap) or P = 1 (shared by the taps):

* ``"full"``: ``(hidden (N, d, P), head_weight (C2 * C1/g, d), head_bias (C2 * C1/g,))``, and
  ``logits[n] = head_weight @ hidden[n] + head_bias``.
* ``"lowrank"``: ``(factor_out (N, C2, R, P), factor_in (N, R, C1/g, P))``, and
  ``logits[n, :, :, p] = factor_out[n, :, :, p] @ factor_in[n, :, :, p]``.

Then ``attention = gate(logits)`` and ``output[n] = conv2d(input[n], (1 + attention[n]) * weight)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.conv_paths import choose_impl, output_size, per_sample_conv, per_sample_conv_backward
from awconv.functional import (
    IMPLS,
    IntOrPair,
    check_conv_shapes,
    check_tensors,
    compute_dtype,
    prepare_geometry,
)

__all__ = ["FUSED_GATES", "FUSED_GENERATORS", "aw_conv2d_fused"]

FUSED_GENERATORS = ("full", "lowrank")
FUSED_GATES = ("tanh", "sigmoid", "none")


class _Span(NamedTuple):
    """Samples [start, stop) and output channels [first, last) of one step."""

    start: int
    stop: int
    first: int
    last: int


def _logits(kind: str, factors: Sequence[Tensor], span: _Span, in_per_group: int) -> Tensor:
    """Logits of one span: (n, c, C1/g, P) for its n samples and c output channels, new memory."""
    n, channels = span.stop - span.start, span.last - span.first
    if kind == "full":
        hidden, head_weight, head_bias = factors
        rows = slice(span.first * in_per_group, span.last * in_per_group)
        hidden = hidden[span.start : span.stop]  # (n, d, P)
        head = head_weight[rows].expand(n, -1, -1)  # (n, c * C1/g, d), no copy
        bias = head_bias[rows, None].expand(n, -1, hidden.shape[-1])
        logits = torch.baddbmm(bias, head, hidden)  # one pass: written in its final layout, bias included
        return logits.view(n, channels, in_per_group, logits.shape[-1])
    factor_out, factor_in = factors
    return torch.einsum(
        "narp,nrbp->nabp",
        factor_out[span.start : span.stop, span.first : span.last],
        factor_in[span.start : span.stop],
    )


def _logits_backward(
    kind: str, factors: Sequence[Tensor], grads: list[Tensor | None], span: _Span, grad_logits: Tensor
) -> None:
    """Adds one span's gradients to ``grads`` (zero-initialised, one per factor, None if unneeded).

    Args:
        grad_logits: (n, c, C1/g, P).
    """
    samples, channels = slice(span.start, span.stop), slice(span.first, span.last)
    if kind == "full":
        hidden, head_weight, _ = factors
        per_channel = grad_logits.shape[2]
        rows = slice(span.first * per_channel, span.last * per_channel)
        grad_flat = grad_logits.reshape(grad_logits.shape[0], -1, grad_logits.shape[-1])  # (n, c * C1/g, P)
        if grads[0] is not None:
            grads[0][samples] += torch.matmul(head_weight[rows].t(), grad_flat)
        if grads[1] is not None:
            grads[1][rows] += torch.einsum("nkp,ndp->kd", grad_flat, hidden[samples])
        if grads[2] is not None:
            grads[2][rows] += grad_flat.sum(dim=(0, 2))
        return
    factor_out, factor_in = factors
    if grads[0] is not None:
        grads[0][samples, channels] += torch.einsum("nabp,nrbp->narp", grad_logits, factor_in[samples])
    if grads[1] is not None:
        grads[1][samples] += torch.einsum("nabp,narp->nrbp", grad_logits, factor_out[samples, channels])


def _factor_(logits: Tensor, gate: str) -> Tensor:
    """The modulation factor ``1 + gate(logits)``, computed in place.

    For ``tanh`` it is computed as ``2 * sigmoid(2 z)``, which equals ``1 + tanh(z)`` but keeps its
    relative precision where ``tanh(z)`` nears -1 and ``1 + tanh(z)`` would cancel.
    """
    if gate == "tanh":
        return logits.mul_(2).sigmoid_().mul_(2)
    if gate == "sigmoid":
        return logits.sigmoid_().add_(1)
    return logits.add_(1)


def _factor_backward_(grad_factor: Tensor, factor: Tensor, gate: str) -> Tensor:
    """Turns the factor's gradient into the logits' gradient, in place.

    With m = 1 + gate(z): tanh gives dm/dz = m (2 - m), sigmoid (m - 1)(2 - m), none 1.
    """
    if gate == "tanh":
        return grad_factor.mul_(factor * (2 - factor))
    if gate == "sigmoid":
        return grad_factor.mul_((factor - 1) * (2 - factor))
    return grad_factor


def _kernels(kind, gate, factors, flat_weight: Tensor, span: _Span, in_place: bool) -> tuple[Tensor, Tensor]:
    """Modulation factor (n, c, C1/g, P) and modulated kernels (n, c, C1/g, kh*kw) of one span.

    With ``in_place`` and P = kh*kw the kernels overwrite the factor (forward needs no more).
    """
    factor = _factor_(_logits(kind, factors, span, flat_weight.shape[1]), gate)
    weight = flat_weight[span.first : span.last]
    if in_place and factor.shape[-1] == weight.shape[-1]:
        return factor, torch.mul(weight, factor, out=factor)
    return factor, weight * factor


def _modulation_backward(
    grad_kernels: Tensor, factor: Tensor, flat_weight: Tensor, gate: str, grad_weight: Tensor | None
) -> Tensor:
    """From the kernels' gradient (n, c, C1/g, T) to the logits' (n, c, C1/g, P); adds to grad_weight."""
    if grad_weight is not None:
        grad_weight += (grad_kernels * factor).sum(dim=0)
    grad_factor = grad_kernels.mul_(flat_weight)
    if factor.shape[-1] == 1:
        grad_factor = grad_factor.sum(dim=-1, keepdim=True)
    return _factor_backward_(grad_factor, factor, gate)


class _FusedAWConv2dFunction(torch.autograd.Function):
    """Generate, gate, modulate and convolve span by span; regenerate the attention in backward.

    A span is a chunk of samples and, on the blocked ``bmm`` path, a block of output channels:
    there the kernels of a block go straight into the matrix product with the input's columns,
    so no tensor of the whole attention's size is ever allocated.
    """

    @staticmethod
    def forward(ctx, x, weight, kind, gate, path, geometry, groups, chunk, block, *factors):
        out = _fused_forward(x, weight, kind, gate, path, geometry, groups, chunk, block, factors)
        ctx.save_for_backward(x, weight, *factors)
        ctx.config = (kind, gate, path, geometry, groups, chunk, block)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        kind, gate, path, geometry, groups, chunk, block = ctx.config
        needs = ctx.needs_input_grad
        grad_x, grad_weight, factor_grads = _fused_backward(
            x, weight, factors, grad_out.contiguous(), kind, gate, path, geometry, groups, chunk, block,
            needs_x=needs[0], needs_weight=needs[1], needs_factors=needs[9:],
        )  # fmt: skip
        return (grad_x, grad_weight, None, None, None, None, None, None, None, *factor_grads)


def _spans(batch: int, channels: int, chunk: int, block: int):
    """Sample chunks, each with its output-channel blocks: yields (chunk_span, [block spans])."""
    for start in range(0, batch, chunk):
        stop = min(start + chunk, batch)
        yield (
            start,
            stop,
            [_Span(start, stop, first, min(first + block, channels)) for first in range(0, channels, block)],
        )


def _fused_forward(x, weight, kind, gate, path, geometry, groups, chunk, block, factors) -> Tensor:
    (out_channels, in_per_group, kh, kw), batch = weight.shape, x.shape[0]
    flat_weight = weight.reshape(out_channels, in_per_group, kh * kw)
    stride, padding, dilation = geometry
    outputs = []
    for start, stop, spans in _spans(batch, out_channels, chunk, block):
        if len(spans) == 1:
            _, kernels = _kernels(kind, gate, factors, flat_weight, spans[0], in_place=True)
            kernels = kernels.view(stop - start, out_channels, in_per_group, kh, kw)
            outputs.append(per_sample_conv(path, x[start:stop], kernels, *geometry, groups))
            continue
        columns = F.unfold(x[start:stop], (kh, kw), dilation, padding, stride)  # (n, C1*kh*kw, L)
        blocks = []
        for span in spans:
            _, kernels = _kernels(kind, gate, factors, flat_weight, span, in_place=True)
            blocks.append(torch.matmul(kernels.flatten(2), columns))  # (n, c, L)
        out_h, out_w = _output_hw(x, (kh, kw), geometry)
        outputs.append(torch.cat(blocks, dim=1).view(stop - start, out_channels, out_h, out_w))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _fused_backward(
    x, weight, factors, grad_out, kind, gate, path, geometry, groups, chunk, block, *, needs_x, needs_weight,
    needs_factors,
):  # fmt: skip
    (out_channels, in_per_group, kh, kw), batch = weight.shape, x.shape[0]
    flat_weight = weight.reshape(out_channels, in_per_group, kh * kw)
    stride, padding, dilation = geometry
    grad_x = torch.empty_like(x) if needs_x else None
    grad_weight = torch.zeros_like(flat_weight) if needs_weight else None
    factor_grads = [
        torch.zeros_like(f) if need else None for f, need in zip(factors, needs_factors, strict=True)
    ]
    for start, stop, spans in _spans(batch, out_channels, chunk, block):
        blocked = len(spans) > 1
        if blocked:
            columns = F.unfold(x[start:stop], (kh, kw), dilation, padding, stride)  # (n, C1*kh*kw, L)
            grad_columns = torch.zeros_like(columns) if needs_x else None
        for span in spans:
            channels = slice(span.first, span.last)
            factor, kernels = _kernels(kind, gate, factors, flat_weight, span, in_place=False)
            n, c = stop - start, span.last - span.first
            if blocked:
                grad_block = grad_out[start:stop, channels].reshape(n, c, -1)  # (n, c, L)
                grad_kernels = torch.matmul(grad_block, columns.transpose(1, 2))  # (n, c, C1*kh*kw)
                if grad_columns is not None:
                    grad_columns.baddbmm_(kernels.flatten(2).transpose(1, 2), grad_block)
            else:
                chunk_grad_x, grad_kernels = per_sample_conv_backward(
                    path, x[start:stop], kernels.view(n, c, in_per_group, kh, kw), grad_out[start:stop],
                    *geometry, groups,
                )  # fmt: skip
                if grad_x is not None:
                    grad_x[start:stop] = chunk_grad_x
            grad_kernels = grad_kernels.view(n, c, in_per_group, kh * kw)
            block_grad_weight = None if grad_weight is None else grad_weight[channels]
            grad_logits = _modulation_backward(
                grad_kernels, factor, flat_weight[channels], gate, block_grad_weight
            )
            _logits_backward(kind, factors, factor_grads, span, grad_logits)
        if blocked and grad_x is not None:
            grad_x[start:stop] = F.fold(grad_columns, x.shape[2:], (kh, kw), dilation, padding, stride)
    if grad_weight is not None:
        grad_weight = grad_weight.view_as(weight)
    return grad_x, grad_weight, factor_grads


def _output_hw(x: Tensor, kernel: tuple[int, int], geometry) -> tuple[int, int]:
    (sh, sw), (ph, pw), (dh, dw) = geometry
    return (
        output_size(x.shape[2] + 2 * ph, kernel[0], sh, dh),
        output_size(x.shape[3] + 2 * pw, kernel[1], sw, dw),
    )


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
    block_channels: int | None = None,
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
        impl: convolution path, as in ``aw_conv2d``; ``"auto"`` decides per chunk.
        chunk_size: samples whose attention exists at once; None is the whole batch. Smaller
            chunks bound the memory but re-read the generator's head once per chunk, which for
            ``"full"`` holds about 3.6x as many values as the weight (d=32, 3x3), so they are slower.
        block_channels: output channels per block on the ``"bmm"`` path with ``groups=1``, where each
            block's kernels go straight into the matrix product; None (the default) is one block.
            Other paths generate all channels at once.

    Returns:
        (N, C2, H_out, W_out).
    """
    if generator not in FUSED_GENERATORS:
        raise ValueError(f"generator must be one of {FUSED_GENERATORS}, got {generator!r}")
    if gate not in FUSED_GATES:
        raise ValueError(f"gate must be one of {FUSED_GATES}, got {gate!r}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    check_tensors(input=input, weight=weight, bias=bias)
    check_conv_shapes(input, weight, bias, groups)
    _check_factors(generator, factors, input, weight)
    input, geometry, out_pixels = prepare_geometry(input, weight.shape[2:], stride, padding, dilation)
    if block_channels is not None and (
        isinstance(block_channels, bool) or not isinstance(block_channels, int) or block_channels < 1
    ):
        raise ValueError(f"block_channels must be a positive int or None, got {block_channels!r}")
    chunk_size = min(chunk_size or input.shape[0], input.shape[0])
    path = choose_impl(chunk_size, out_pixels) if impl == "auto" else impl
    out_channels = weight.shape[0]
    if path != "bmm" or groups != 1 or block_channels is None:
        block_channels = out_channels
    with compute_dtype(input, weight, *factors) as (input, weight, *factors):
        out = _FusedAWConv2dFunction.apply(
            input.contiguous(), weight, generator, gate, path, geometry, groups, chunk_size,
            min(block_channels, out_channels), *factors,
        )  # fmt: skip
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
