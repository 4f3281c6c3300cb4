"""The per-sample convolution paths behind AW-convolution, forward and backward.

Each path convolves sample n of ``x`` with its own kernels ``kernels[n]``:

* ``"loop"``: one ``F.conv2d`` per sample; for a batch of one it is one plain convolution.
* ``"grouped"``: the batch folded into the channels, one convolution with ``groups = N * groups``.
* ``"bmm"``: ``unfold`` (im2col) and one batched matrix product.

Shapes: x (N, C1, H, W), kernels (N, C2, C1/g, kh, kw), output (N, C2, H_out, W_out). ``padding``
is a symmetric zero padding ``(ph, pw)``; the callers turn other paddings into it.

``modulated_conv`` and ``modulated_conv_backward`` are the kernels of ``torch.ops.awconv.aw_conv2d``
(the attention given): they make the kernels ``(1 + attention) * weight`` and take one path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.ops.geometry import output_size

__all__ = [
    "BMM_MAX_OUTPUT_PIXELS",
    "IMPLS",
    "PATHS",
    "choose_impl",
    "modulated_conv",
    "modulated_conv_backward",
    "per_sample_conv",
    "per_sample_conv_backward",
]

PATHS = ("grouped", "bmm", "loop")
# What the operators' ``impl`` argument takes: a path, or ``"auto"`` to choose by shape.
IMPLS = ("auto", *PATHS)

# ``auto`` uses the unfold + bmm path at or below this many output pixels per sample. Measured at
# batch 8 (docs/performance.md): bmm is 1.9x faster than grouped at 7x7 and 1.2x slower at 14x14
# with the attention given; 14x14 stays on bmm for the fused operator's tap-major kernels (see
# docs/method.md).
BMM_MAX_OUTPUT_PIXELS = 14 * 14


def _loop(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """One convolution per sample. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    return torch.cat(
        [
            F.conv2d(x[n : n + 1], kernels[n], None, stride, padding, dilation, groups)
            for n in range(x.shape[0])
        ]
    )


def _grouped(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The batch folded into groups. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    n, c1, h, w = x.shape
    out = F.conv2d(
        x.reshape(1, n * c1, h, w), kernels.flatten(0, 1), None, stride, padding, dilation, n * groups
    )
    return out.reshape(n, kernels.shape[1], out.shape[-2], out.shape[-1])


def _bmm(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """unfold + batched matmul. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    n, _, h, w = x.shape
    c2, kh, kw = kernels.shape[1], kernels.shape[3], kernels.shape[4]
    out_h = output_size(h + 2 * padding[0], kh, stride[0], dilation[0])
    out_w = output_size(w + 2 * padding[1], kw, stride[1], dilation[1])
    columns = F.unfold(x, (kh, kw), dilation, padding, stride)  # (N, C1*kh*kw, L)
    columns = columns.reshape(n, groups, -1, out_h * out_w)  # (N, g, C1/g*kh*kw, L)
    kernels = kernels.reshape(n, groups, c2 // groups, -1)  # (N, g, C2/g, C1/g*kh*kw)
    return torch.matmul(kernels, columns).reshape(n, c2, out_h, out_w)


def _bmm_backward(x: Tensor, kernels: Tensor, grad_out: Tensor, stride, padding, dilation, groups: int):
    """Gradients of ``_bmm`` with respect to x and kernels."""
    n, c1, h, w = x.shape
    c2, kh, kw = kernels.shape[1], kernels.shape[3], kernels.shape[4]
    columns = F.unfold(x, (kh, kw), dilation, padding, stride)
    columns = columns.reshape(n, groups, -1, columns.shape[-1])  # (N, g, C1/g*kh*kw, L)
    grad_out = grad_out.reshape(n, groups, c2 // groups, -1)  # (N, g, C2/g, L)
    kernels = kernels.reshape(n, groups, c2 // groups, -1)
    grad_kernels = torch.matmul(grad_out, columns.transpose(-1, -2))
    grad_columns = torch.matmul(kernels.transpose(-1, -2), grad_out).reshape(n, c1 * kh * kw, -1)
    grad_x = F.fold(grad_columns, (h, w), (kh, kw), dilation, padding, stride)
    return grad_x, grad_kernels.reshape(n, c2, c1 // groups, kh, kw)


def _conv_backward(x: Tensor, kernels: Tensor, grad_out: Tensor, stride, padding, dilation, groups: int):
    """Gradients of ``_grouped`` (also right for a batch of one) w.r.t. x and kernels."""
    n, c1, h, w = x.shape
    folded_kernels = kernels.flatten(0, 1)
    grad_x, grad_kernels, _ = torch.ops.aten.convolution_backward(
        grad_out.reshape(1, -1, grad_out.shape[-2], grad_out.shape[-1]),
        x.reshape(1, n * c1, h, w),
        folded_kernels,
        None,
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        n * groups,
        [True, True, False],
    )
    return grad_x.reshape(x.shape), grad_kernels.reshape(kernels.shape)


_FORWARD = {"grouped": _grouped, "bmm": _bmm, "loop": _loop}


def dense_strides(x: Tensor) -> Tensor:
    """x (contiguous) with the strides ``torch.empty`` gives its shape, also for dimensions of size 1.

    A channels_last tensor with one channel is contiguous, and ``.contiguous()`` returns it as it is,
    with a stride of 1 for that channel; oneDNN's convolution (torch 2.14, AVX-512, one thread) then
    reads it as NHWC and returned wrong values at a stride of 3 (found by the fuzz tests). The same
    memory with dense strides is a view, not a copy.
    """
    strides, step = [], 1
    for size in reversed(x.shape):
        strides.insert(0, step)
        step *= max(size, 1)
    return x if list(x.stride()) == strides else x.as_strided(x.shape, strides)


def per_sample_conv(impl: str, x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """Convolves each sample with its own kernels along path ``impl`` (not ``"auto"``).

    Args:
        impl: ``"grouped"``, ``"bmm"`` or ``"loop"``.
        x: (N, C1, H, W), contiguous.
        kernels: (N, C2, C1/g, kh, kw).
        stride, padding, dilation: pairs of ints; padding is zero padding on both sides.
        groups: the convolution's groups.

    Returns:
        (N, C2, H_out, W_out).
    """
    return _FORWARD[impl](dense_strides(x), kernels, stride, padding, dilation, groups)


def per_sample_conv_backward(
    impl: str, x: Tensor, kernels: Tensor, grad_out: Tensor, stride, padding, dilation, groups: int
) -> tuple[Tensor, Tensor]:
    """Gradients of ``per_sample_conv`` w.r.t. x (N, C1, H, W) and kernels (N, C2, C1/g, kh, kw)."""
    x, grad_out = dense_strides(x), dense_strides(grad_out)
    if impl == "bmm":
        return _bmm_backward(x, kernels, grad_out, stride, padding, dilation, groups)
    return _conv_backward(x, kernels, grad_out, stride, padding, dilation, groups)


def choose_impl(batch_size: int, output_pixels: int) -> str:
    """The path ``impl="auto"`` takes for a batch size and a per-sample output area."""
    if batch_size == 1:
        return "loop"
    return "bmm" if output_pixels <= BMM_MAX_OUTPUT_PIXELS else "grouped"


def _modulate(weight: Tensor, attention: Tensor, residual: bool) -> Tensor:
    """Per-sample kernels: weight (C2, C1/g, kh, kw), attention (N, C2, C1/g, kh, kw) -> same."""
    return torch.addcmul(weight, weight, attention) if residual else weight * attention


def modulated_conv(
    impl: str, x: Tensor, weight: Tensor, attention: Tensor, residual: bool, geometry, groups: int
) -> Tensor:
    """``conv2d(x[n], (1 + attention[n]) * weight)`` for every sample n, along path ``impl``.

    Args:
        impl: ``"grouped"``, ``"bmm"`` or ``"loop"``.
        x: (N, C1, H, W).
        weight: (C2, C1/g, kh, kw).
        attention: (N, C2, C1/g, kh, kw).
        residual: modulate by ``1 + attention`` rather than ``attention``.
        geometry: (stride, padding, dilation) pairs.
        groups: the convolution's groups.

    Returns:
        (N, C2, H_out, W_out), contiguous.
    """
    kernels = _modulate(weight, attention, residual)
    return per_sample_conv(impl, x.contiguous(), kernels, *geometry, groups)


def modulated_conv_backward(
    impl: str,
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    attention: Tensor,
    residual: bool,
    geometry,
    groups: int,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """Gradients of ``modulated_conv`` w.r.t. (x, weight, attention); None where ``needs`` is False.

    The modulated kernels are made again here rather than kept from forward.
    """
    kernels = _modulate(weight, attention, residual)
    grad_x, grad_kernels = per_sample_conv_backward(
        impl, x.contiguous(), kernels, grad_out.contiguous(), *geometry, groups
    )
    grad_weight = grad_attention = None
    if needs[2]:
        grad_attention = grad_kernels * weight
    if needs[1]:
        factor = 1 + attention if residual else attention
        grad_weight = torch.einsum("nabhw,nabhw->abhw", grad_kernels, factor)
    return [grad_x if needs[0] else None, grad_weight, grad_attention]
