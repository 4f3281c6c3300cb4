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

import torch
from torch import Tensor

from awconv.conv_paths import choose_impl, per_sample_conv, per_sample_conv_backward
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


def _logits(kind: str, factors: Sequence[Tensor], start: int, stop: int, out_channels: int) -> Tensor:
    """Logits of samples [start, stop): (n, C2, C1/g, P), freshly allocated."""
    if kind == "full":
        hidden, head_weight, head_bias = factors
        logits = torch.matmul(head_weight, hidden[start:stop])  # (n, C2 * C1/g, P)
        logits += head_bias[:, None]
        return logits.view(stop - start, out_channels, -1, logits.shape[-1])
    factor_out, factor_in = factors
    return torch.einsum("narp,nrbp->nabp", factor_out[start:stop], factor_in[start:stop])


def _logits_backward(
    kind: str,
    factors: Sequence[Tensor],
    grads: list[Tensor | None],
    start: int,
    stop: int,
    grad_logits: Tensor,
) -> None:
    """Adds the gradients of samples [start, stop) to ``grads`` (one per factor, None if unneeded).

    Args:
        grad_logits: (n, C2, C1/g, P).
    """
    if kind == "full":
        hidden, head_weight, _ = factors
        grad_flat = grad_logits.reshape(stop - start, head_weight.shape[0], -1)  # (n, C2 * C1/g, P)
        if grads[0] is not None:
            grads[0][start:stop] = torch.matmul(head_weight.t(), grad_flat)
        if grads[1] is not None:
            grads[1] += torch.einsum("nkp,ndp->kd", grad_flat, hidden[start:stop])
        if grads[2] is not None:
            grads[2] += grad_flat.sum(dim=(0, 2))
        return
    factor_out, factor_in = factors
    if grads[0] is not None:
        grads[0][start:stop] = torch.einsum("nabp,nrbp->narp", grad_logits, factor_in[start:stop])
    if grads[1] is not None:
        grads[1][start:stop] = torch.einsum("nabp,narp->nrbp", grad_logits, factor_out[start:stop])


def _gate_(logits: Tensor, gate: str) -> Tensor:
    """Applies the gate in place and returns the attention."""
    if gate == "tanh":
        return logits.tanh_()
    if gate == "sigmoid":
        return logits.sigmoid_()
    return logits


def _gate_backward_(grad_attention: Tensor, attention: Tensor, gate: str) -> Tensor:
    """Turns the attention's gradient into the logits' gradient, in place."""
    if gate == "tanh":
        return grad_attention.mul_(1 - attention.square())
    if gate == "sigmoid":
        return grad_attention.mul_(attention * (1 - attention))
    return grad_attention


class _FusedAWConv2dFunction(torch.autograd.Function):
    """Generate, gate, modulate and convolve in chunks; regenerate the attention in backward."""

    @staticmethod
    def forward(ctx, x, weight, kind, gate, impl, geometry, groups, chunk, out_pixels, *factors):
        batch, (out_channels, in_per_group, kh, kw) = x.shape[0], weight.shape
        flat_weight = weight.reshape(out_channels, in_per_group, kh * kw)
        outputs = []
        for start in range(0, batch, chunk):
            stop = min(start + chunk, batch)
            attention = _gate_(_logits(kind, factors, start, stop, out_channels), gate)
            if attention.shape[-1] == kh * kw:  # modulate in place: one pass, no new buffer
                kernels = torch.addcmul(flat_weight, flat_weight, attention, out=attention)
            else:
                kernels = torch.addcmul(flat_weight, flat_weight, attention)
            path = choose_impl(stop - start, out_pixels) if impl == "auto" else impl
            kernels = kernels.view(stop - start, out_channels, in_per_group, kh, kw)
            outputs.append(per_sample_conv(path, x[start:stop], kernels, *geometry, groups))
        ctx.save_for_backward(x, weight, *factors)
        ctx.config = (kind, gate, impl, geometry, groups, chunk, out_pixels)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        kind, gate, impl, geometry, groups, chunk, out_pixels = ctx.config
        batch, (out_channels, in_per_group, kh, kw) = x.shape[0], weight.shape
        flat_weight = weight.reshape(out_channels, in_per_group, kh * kw)
        grad_out = grad_out.contiguous()
        needs = ctx.needs_input_grad
        grad_x = torch.empty_like(x) if needs[0] else None
        grad_weight = torch.zeros_like(flat_weight) if needs[1] else None
        factor_grads: list[Tensor | None] = []
        for index, factor in enumerate(factors):
            if not needs[9 + index]:
                factor_grads.append(None)
            elif kind == "full" and index > 0:  # the head's weight and bias accumulate over chunks
                factor_grads.append(torch.zeros_like(factor))
            else:
                factor_grads.append(torch.empty_like(factor))
        for start in range(0, batch, chunk):
            stop = min(start + chunk, batch)
            attention = _gate_(_logits(kind, factors, start, stop, out_channels), gate)
            kernels = torch.addcmul(flat_weight, flat_weight, attention)
            kernels = kernels.view(stop - start, out_channels, in_per_group, kh, kw)
            path = choose_impl(stop - start, out_pixels) if impl == "auto" else impl
            chunk_grad_x, grad_kernels = per_sample_conv_backward(
                path, x[start:stop], kernels, grad_out[start:stop], *geometry, groups
            )
            if grad_x is not None:
                grad_x[start:stop] = chunk_grad_x
            grad_kernels = grad_kernels.view(stop - start, out_channels, in_per_group, kh * kw)
            if grad_weight is not None:
                grad_weight += grad_kernels.sum(dim=0)
                grad_weight += (grad_kernels * attention).sum(dim=0)
            grad_attention = grad_kernels.mul_(flat_weight)
            if attention.shape[-1] == 1:
                grad_attention = grad_attention.sum(dim=-1, keepdim=True)
            grad_logits = _gate_backward_(grad_attention, attention, gate)
            _logits_backward(kind, factors, factor_grads, start, stop, grad_logits)
        if grad_weight is not None:
            grad_weight = grad_weight.view_as(weight)
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
        impl: convolution path, as in ``aw_conv2d``; ``"auto"`` decides per chunk.
        chunk_size: samples whose attention exists at once; None is the whole batch. Smaller
            chunks bound the memory but re-read the generator's head once per chunk, which for
            ``"full"`` holds about 3.6x as many values as the weight (d=32, 3x3), so they are slower.

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
    if chunk_size is None:
        chunk_size = input.shape[0]
    with compute_dtype(input, weight, *factors) as (input, weight, *factors):
        out = _FusedAWConv2dFunction.apply(
            input.contiguous(),
            weight,
            generator,
            gate,
            impl,
            geometry,
            groups,
            chunk_size,
            out_pixels,
            *factors,
        )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
