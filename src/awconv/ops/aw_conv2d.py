"""The AW-convolution operator: a convolution whose weights are modulated per sample.

AW-convolution (Zhu et al., "An Attention Module for Convolutional Neural Networks",
ICANN 2021, arXiv 2108.08205) multiplies an attention tensor with the shape of the weights into
the weights, separately for every sample:

    output[n] = conv2d(input[n], (1 + attention[n]) * weight) + bias

``aw_conv2d`` takes the attention as a tensor. Its ``impl`` picks one of the paths of
``awconv.ops.paths`` (``"grouped"``, ``"bmm"``, ``"loop"``); ``"auto"`` runs one plain convolution
for a batch of one, ``"bmm"`` for outputs of at most ``BMM_MAX_OUTPUT_PIXELS`` pixels and
``"grouped"`` otherwise. Every path gives the same answer.

Memory: only ``input``, ``weight`` and ``attention`` are kept for backward; the modulated
weights ``(1 + attention) * weight`` are recomputed there instead of being stored.
``awconv.ops.fused.aw_conv2d_fused`` goes further and never stores the attention either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from awconv.ops.geometry import IntOrPair, prepare_geometry
from awconv.ops.paths import IMPLS, choose_impl, per_sample_conv, per_sample_conv_backward
from awconv.ops.precision import compute_dtype
from awconv.ops.validation import check_conv_shapes, check_tensors

__all__ = ["aw_conv2d"]


def _modulate(weight: Tensor, attention: Tensor, residual: bool) -> Tensor:
    """Per-sample kernels: weight (C2, C1/g, kh, kw), attention (N, C2, C1/g, kh, kw) -> same."""
    return torch.addcmul(weight, weight, attention) if residual else weight * attention


class _AWConv2dFunction(torch.autograd.Function):
    """Modulate and convolve, keeping only (input, weight, attention) for backward."""

    @staticmethod
    def forward(ctx, x, weight, attention, residual, impl, stride, padding, dilation, groups):
        kernels = _modulate(weight, attention, residual)
        out = per_sample_conv(impl, x, kernels, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, attention)
        ctx.config = (residual, impl, stride, padding, dilation, groups)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, attention = ctx.saved_tensors
        residual, impl, stride, padding, dilation, groups = ctx.config
        kernels = _modulate(weight, attention, residual)
        grad_out = grad_out.contiguous()
        grad_x, grad_kernels = per_sample_conv_backward(
            impl, x, kernels, grad_out, stride, padding, dilation, groups
        )
        grad_attention = grad_weight = None
        if ctx.needs_input_grad[2]:
            grad_attention = grad_kernels * weight
        if ctx.needs_input_grad[1]:
            factor = 1 + attention if residual else attention
            grad_weight = torch.einsum("nabhw,nabhw->abhw", grad_kernels, factor)
        if not ctx.needs_input_grad[0]:
            grad_x = None
        return grad_x, grad_weight, grad_attention, None, None, None, None, None, None


def aw_conv2d(
    input: Tensor,
    weight: Tensor,
    attention: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    residual: bool = True,
    impl: str = "auto",
) -> Tensor:
    """AW-convolution: a 2-D convolution with per-sample attention on the weights.

    ``output[n] = conv2d(input[n], (1 + attention[n]) * weight) + bias``, or with
    ``attention[n] * weight`` when ``residual=False``. Zero padding; other padding modes are the
    caller's (``AWConv2d`` pads first, as ``nn.Conv2d`` does).

    Args:
        input: (N, C1, H, W).
        weight: (C2, C1/groups, kh, kw).
        attention: (N, C2, C1/groups, kh, kw).
        bias: (C2,) or None.
        stride: int or (sh, sw).
        padding: int, (ph, pw), ``"same"`` or ``"valid"``.
        dilation: int or (dh, dw).
        groups: number of blocked connections from input to output channels.
        residual: modulate by ``1 + attention`` (the default) rather than ``attention``.
        impl: ``"auto"``, ``"grouped"``, ``"bmm"`` or ``"loop"``; all give the same result.

    Returns:
        (N, C2, H_out, W_out).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    check_tensors(input=input, weight=weight, attention=attention, bias=bias)
    check_conv_shapes(input, weight, bias, groups)
    expected = (input.shape[0], *weight.shape)
    if tuple(attention.shape) != expected:
        raise ValueError(
            f"attention must have shape (N, C2, C1/groups, kh, kw) = {expected}, got {tuple(attention.shape)}"
        )
    input, geometry, (out_h, out_w) = prepare_geometry(input, weight.shape[2:], stride, padding, dilation)
    if impl == "auto":
        impl = choose_impl(input.shape[0], out_h * out_w)

    with compute_dtype(input, weight, attention) as (input, weight, attention):
        out = _AWConv2dFunction.apply(
            input.contiguous(), weight, attention, residual, impl, *geometry, groups
        )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
