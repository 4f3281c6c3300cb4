"""The AW-convolution operator: a convolution whose weights are modulated per sample.

AW-convolution (Zhu et al., "An Attention Module for Convolutional Neural Networks",
ICANN 2021, arXiv 2108.08205) multiplies an attention tensor with the shape of the weights into
the weights, separately for every sample:

    output[n] = conv2d(input[n], (1 + attention[n]) * weight) + bias

``aw_conv2d`` takes the attention as a tensor. Its ``impl`` picks one of the paths of
``awconv.conv_paths`` (``"grouped"``, ``"bmm"``, ``"loop"``); ``"auto"`` runs one plain convolution
for a batch of one, ``"bmm"`` for outputs of at most ``BMM_MAX_OUTPUT_PIXELS`` pixels and
``"grouped"`` otherwise. Every path gives the same answer.

Memory: only ``input``, ``weight`` and ``attention`` are kept for backward; the modulated
weights ``(1 + attention) * weight`` are recomputed there instead of being stored.
``awconv.fused.aw_conv2d_fused`` goes further and never stores the attention either.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.conv_paths import choose_impl, output_size, per_sample_conv, per_sample_conv_backward

__all__ = ["IMPLS", "aw_conv2d", "resolve_padding"]

IMPLS = ("auto", "grouped", "bmm", "loop")

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


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, or None when autocast is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device argument
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:  # a device type without autocast, such as "meta"
        return None
    if not enabled:
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


def prepare_geometry(
    input: Tensor,
    kernel_size: Sequence[int],
    stride: IntOrPair,
    padding: IntOrPair | str,
    dilation: IntOrPair,
) -> tuple[Tensor, tuple[tuple[int, int], tuple[int, int], tuple[int, int]], tuple[int, int]]:
    """Validates the convolution's geometry and turns any padding into a symmetric one.

    Args:
        input: (N, C1, H, W).
        kernel_size: (kh, kw).
        stride, padding, dilation: as ``aw_conv2d`` takes them.

    Returns:
        ``(input, (stride, padding, dilation), (H_out, W_out))``: the input, zero-padded here only
        when the padding is asymmetric; the three pairs the convolution paths take; and the
        output's spatial size.
    """
    stride_pair = _pair(stride, "stride")
    dilation_pair = _pair(dilation, "dilation")
    if min(stride_pair) < 1 or min(dilation_pair) < 1:
        raise ValueError(f"stride and dilation must be positive, got {stride!r} and {dilation!r}")
    kernel = (int(kernel_size[0]), int(kernel_size[1]))
    pads = resolve_padding(padding, kernel, stride_pair, dilation_pair)
    padded = (input.shape[2] + pads[2] + pads[3], input.shape[3] + pads[0] + pads[1])
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation_pair, kernel, strict=True))
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation_pair} spans {span} pixels, "
            f"more than the padded input {padded}"
        )
    if input.shape[0] == 0:
        raise ValueError("input must hold at least one sample, got batch size 0")
    if pads[0] == pads[1] and pads[2] == pads[3]:
        padding_pair = (pads[2], pads[0])  # symmetric: the convolution pads, no copy
    else:
        input, padding_pair = F.pad(input, pads), (0, 0)
    out_size = (
        output_size(padded[0], kernel[0], stride_pair[0], dilation_pair[0]),
        output_size(padded[1], kernel[1], stride_pair[1], dilation_pair[1]),
    )
    return input, (stride_pair, padding_pair, dilation_pair), out_size


@contextlib.contextmanager
def compute_dtype(*tensors: Tensor):
    """Casts tensors to the dtype to compute in and turns autocast off inside, as custom_fwd does.

    Under autocast that is the autocast dtype; otherwise the promoted dtype of the tensors.
    Gradients flow back through the casts in the tensors' own dtypes.
    """
    device_type = tensors[0].device.type
    dtype = _autocast_dtype(device_type)
    if dtype is None:
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        autocast_off = contextlib.nullcontext()
    else:
        autocast_off = torch.autocast(device_type, enabled=False)
    with autocast_off:
        yield tuple(t.to(dtype) for t in tensors)


def check_tensors(**tensors: Tensor | None) -> None:
    """Checks that each named argument is a floating-point tensor (None is skipped)."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {tensor.dtype}")


def check_conv_shapes(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    """Checks input (N, C1, H, W), weight (C2, C1/groups, kh, kw), bias (C2,) and groups."""
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
