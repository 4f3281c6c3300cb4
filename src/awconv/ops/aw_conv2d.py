"""The AW-convolution operator: a convolution whose weights are modulated per sample.

AW-convolution (Zhu et al., "An Attention Module for Convolutional Neural Networks",
ICANN 2021, arXiv 2108.08205) multiplies an attention tensor with the shape of the weights into
the weights, separately for every sample:

    output[n] = conv2d(input[n], (1 + attention[n]) * weight) + bias

``aw_conv2d`` takes the attention as a tensor. Its ``impl`` picks one of the paths of
``awconv.ops.paths`` (``"grouped"``, ``"bmm"``, ``"loop"``); ``"auto"`` runs one plain convolution
for a batch of one, ``"bmm"`` for outputs of at most ``BMM_MAX_OUTPUT_PIXELS`` pixels and
``"grouped"`` otherwise. Every path gives the same answer.

It runs the operator ``torch.ops.awconv.aw_conv2d`` (``awconv.ops.operators``); like
``awconv.ops.fused.aw_conv2d_fused`` it is a leaf for ``torch.fx.symbolic_trace`` and runs the
composite form of ``awconv.ops.composite`` under ONNX export, TorchScript tracing and ``torch.func``.

Memory: only ``input``, ``weight`` and ``attention`` are kept for backward; the modulated
weights ``(1 + attention) * weight`` are recomputed there instead of being stored.
``awconv.ops.fused.aw_conv2d_fused`` goes further and never stores the attention either.
"""

from __future__ import annotations

from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function

from awconv.ops.composite import composite_aw_conv2d, wants_composite
from awconv.ops.geometry import IntOrPair, prepare_geometry
from awconv.ops.operators import aw_conv2d_op
from awconv.ops.paths import IMPLS
from awconv.ops.precision import to_compute_dtype
from awconv.ops.validation import check_conv_shapes, check_tensors

__all__ = ["aw_conv2d"]


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
        (N, C2, H_out, W_out), in input's memory format.
    """
    tensors = tuple(t for t in (input, weight, attention, bias) if t is not None)
    if has_torch_function(tensors):  # torch.fx.Proxy and other __torch_function__ types
        return handle_torch_function(
            aw_conv2d, tensors, input, weight, attention, bias, stride, padding, dilation, groups,
            residual=residual, impl=impl,
        )  # fmt: skip
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    check_tensors(input=input, weight=weight, attention=attention, bias=bias)
    check_conv_shapes(input, weight, bias, groups)
    expected = (input.shape[0], *weight.shape)
    if tuple(attention.shape) != expected:
        raise ValueError(
            f"attention must have shape (N, C2, C1/groups, kh, kw) = {expected}, got {tuple(attention.shape)}"
        )
    input, geometry = prepare_geometry(input, weight.shape[2:], stride, padding, dilation)
    input, weight, attention = to_compute_dtype(input, weight, attention)
    if wants_composite():
        out = composite_aw_conv2d(input, weight, attention, residual, geometry, groups)
    else:
        out = aw_conv2d_op(input, weight, attention, residual, *geometry, groups, impl)
    if bias is not None:
        out = out + (bias if bias.dtype == out.dtype else bias.to(out.dtype)).view(1, -1, 1, 1)
    return out
