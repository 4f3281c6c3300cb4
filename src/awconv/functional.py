"""The AW-convolution operator: a convolution whose weights are modulated per sample.

AW-convolution (Zhu et al., "An Attention Module for Convolutional Neural Networks",
ICANN 2021, arXiv 2108.08205) multiplies an attention tensor with the shape of the weights into
the weights, separately for every sample:

    output[n] = conv2d(input[n], (1 + attention[n]) * weight) + bias

This file holds ``aw_conv2d`` and its computation paths. Every path gives the same answer:

* ``"loop"``: one plain convolution per sample (the reference).
* ``"grouped"``: the batch folded into the channels and one grouped convolution with
  ``groups = N * groups``. Best when the output is large (early layers).
* ``"bmm"``: ``unfold`` (im2col) and one batched matrix product. Best when the output is small
  and the channels many (deep layers); keeps a dynamic batch size in ONNX export.
* ``"auto"``: batch 1 runs one plain convolution; otherwise ``"bmm"`` when the output has at most
  ``BMM_MAX_OUTPUT_PIXELS`` pixels, else ``"grouped"`` (see ``docs/method.md`` for the measurement).

Memory: only ``input``, ``weight`` and ``attention`` are kept for backward; the modulated
weights ``(1 + attention) * weight`` are recomputed there instead of being stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BMM_MAX_OUTPUT_PIXELS", "IMPLS", "aw_conv2d", "resolve_padding"]

IMPLS = ("auto", "grouped", "bmm", "loop")

# ``auto`` uses the unfold + bmm path at or below this many output pixels per sample.
# Measured on a 2-core x86 CPU (benchmarks/operator.py): bmm wins at 14x14 and 7x7 for the
# ResNet channel widths, the grouped convolution at 28x28 and above.
BMM_MAX_OUTPUT_PIXELS = 14 * 14

IntOrPair = int | Sequence[int]


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    """Turns an int or a 2-sequence of ints into a pair, or raises naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def resolve_padding(
    padding: IntOrPair | str,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Turns a padding argument into explicit ``(left, right, top, bottom)`` amounts.

    Args:
        padding: an int, an ``(h, w)`` pair, ``"valid"`` or ``"same"`` (stride 1 only, as in
            ``torch.nn.functional.conv2d``; odd totals put the extra pixel right and bottom).
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.

    Returns:
        ``(left, right, top, bottom)``, the order ``torch.nn.functional.pad`` takes.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
        total_h = dilation[0] * (kernel_size[0] - 1)
        total_w = dilation[1] * (kernel_size[1] - 1)
        return total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2
    pad_h, pad_w = _pair(padding, "padding")
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pad_w, pad_w, pad_h, pad_h


def _modulate(weight: Tensor, attention: Tensor, residual: bool) -> Tensor:
    """Per-sample kernels: weight (C2, C1/g, kh, kw), attention (N, C2, C1/g, kh, kw) -> same."""
    return torch.addcmul(weight, weight, attention) if residual else weight * attention


def _conv_loop(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """One convolution per sample. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    return torch.cat(
        [
            F.conv2d(x[n : n + 1], kernels[n], None, stride, padding, dilation, groups)
            for n in range(x.shape[0])
        ]
    )


def _conv_grouped(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The batch folded into groups. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    n, c1, h, w = x.shape
    out = F.conv2d(
        x.reshape(1, n * c1, h, w), kernels.flatten(0, 1), None, stride, padding, dilation, n * groups
    )
    return out.reshape(n, kernels.shape[1], out.shape[-2], out.shape[-1])


def _output_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _conv_bmm(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """unfold + batched matmul. x: (N, C1, H, W), kernels: (N, C2, C1/g, kh, kw)."""
    n, _, h, w = x.shape
    c2, kh, kw = kernels.shape[1], kernels.shape[3], kernels.shape[4]
    out_h = _output_size(h + 2 * padding[0], kh, stride[0], dilation[0])
    out_w = _output_size(w + 2 * padding[1], kw, stride[1], dilation[1])
    columns = F.unfold(x, (kh, kw), dilation, padding, stride)  # (N, C1*kh*kw, L)
    columns = columns.reshape(n, groups, -1, out_h * out_w)  # (N, g, C1/g*kh*kw, L)
    kernels = kernels.reshape(n, groups, c2 // groups, -1)  # (N, g, C2/g, C1/g*kh*kw)
    return torch.matmul(kernels, columns).reshape(n, c2, out_h, out_w)


def _bmm_backward(x: Tensor, kernels: Tensor, grad_out: Tensor, stride, padding, dilation, groups: int):
    """Gradients of ``_conv_bmm`` with respect to x and kernels."""
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
    """Gradients of ``_conv_grouped`` (also right for a batch of one) w.r.t. x and kernels."""
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


_FORWARD = {"grouped": _conv_grouped, "bmm": _conv_bmm, "loop": _conv_loop}


class _AWConv2dFunction(torch.autograd.Function):
    """Modulate and convolve, keeping only (input, weight, attention) for backward."""

    @staticmethod
    def forward(ctx, x, weight, attention, residual, impl, stride, padding, dilation, groups):
        kernels = _modulate(weight, attention, residual)
        out = _FORWARD[impl](x, kernels, stride, padding, dilation, groups)
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
        if impl == "bmm":
            grad_x, grad_kernels = _bmm_backward(x, kernels, grad_out, stride, padding, dilation, groups)
        else:
            grad_x, grad_kernels = _conv_backward(x, kernels, grad_out, stride, padding, dilation, groups)
        grad_attention = grad_weight = None
        if ctx.needs_input_grad[2]:
            grad_attention = grad_kernels * weight
        if ctx.needs_input_grad[1]:
            factor = 1 + attention if residual else attention
            grad_weight = torch.einsum("nabhw,nabhw->abhw", grad_kernels, factor)
        if not ctx.needs_input_grad[0]:
            grad_x = None
        return grad_x, grad_weight, grad_attention, None, None, None, None, None, None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, or None when autocast is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device argument
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


def choose_impl(batch_size: int, output_pixels: int) -> str:
    """The path ``impl="auto"`` takes for a batch size and a per-sample output area."""
    if batch_size == 1:
        return "loop"
    return "bmm" if output_pixels <= BMM_MAX_OUTPUT_PIXELS else "grouped"


def _check_inputs(x: Tensor, weight: Tensor, attention: Tensor, bias: Tensor | None, groups: int):
    for name, tensor in (("input", x), ("weight", weight), ("attention", attention), ("bias", bias)):
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {tensor.dtype}")
    if x.dim() != 4:
        raise ValueError(f"input must have shape (N, C1, H, W), got {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must have shape (C2, C1/groups, kh, kw), got {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c2, c1_per_group = weight.shape[0], weight.shape[1]
    if x.shape[1] != c1_per_group * groups:
        raise ValueError(
            f"input has {x.shape[1]} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {c1_per_group * groups}"
        )
    if c2 % groups:
        raise ValueError(f"weight's out channels ({c2}) must be divisible by groups={groups}")
    expected = (x.shape[0], *weight.shape)
    if tuple(attention.shape) != expected:
        raise ValueError(
            f"attention must have shape (N, C2, C1/groups, kh, kw) = {expected}, got {tuple(attention.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (c2,):
        raise ValueError(f"bias must have shape ({c2},), got {tuple(bias.shape)}")


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
    _check_inputs(input, weight, attention, bias, groups)
    stride_pair = _pair(stride, "stride")
    dilation_pair = _pair(dilation, "dilation")
    if min(stride_pair) < 1 or min(dilation_pair) < 1:
        raise ValueError(f"stride and dilation must be positive, got {stride!r} and {dilation!r}")
    kernel_size = (weight.shape[2], weight.shape[3])
    pads = resolve_padding(padding, kernel_size, stride_pair, dilation_pair)
    padded_h = input.shape[2] + pads[2] + pads[3]
    padded_w = input.shape[3] + pads[0] + pads[1]
    span_h = dilation_pair[0] * (kernel_size[0] - 1) + 1
    span_w = dilation_pair[1] * (kernel_size[1] - 1) + 1
    if span_h > padded_h or span_w > padded_w:
        raise ValueError(
            f"kernel {kernel_size} with dilation {dilation_pair} spans {(span_h, span_w)} pixels, "
            f"more than the padded input {(padded_h, padded_w)}"
        )
    if input.shape[0] == 0:
        raise ValueError("input must hold at least one sample, got batch size 0")
    if pads[0] == pads[1] and pads[2] == pads[3]:
        padding_pair = (pads[2], pads[0])  # symmetric: the convolution pads, no copy
    else:
        input, padding_pair = F.pad(input, pads), (0, 0)
    if impl == "auto":
        out_h = _output_size(padded_h, kernel_size[0], stride_pair[0], dilation_pair[0])
        out_w = _output_size(padded_w, kernel_size[1], stride_pair[1], dilation_pair[1])
        impl = choose_impl(input.shape[0], out_h * out_w)

    # Under autocast, compute in its dtype with autocast off inside, as custom_fwd would.
    dtype = _autocast_dtype(input.device.type)
    if dtype is None:
        dtype = torch.promote_types(torch.promote_types(input.dtype, weight.dtype), attention.dtype)
        autocast_off = contextlib.nullcontext()
    else:
        autocast_off = torch.autocast(input.device.type, enabled=False)
    input, weight, attention = (t.to(dtype) for t in (input, weight, attention))
    with autocast_off:
        out = _AWConv2dFunction.apply(
            input.contiguous(),
            weight,
            attention,
            residual,
            impl,
            stride_pair,
            padding_pair,
            dilation_pair,
            groups,
        )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
