"""The geometry of a 2-D convolution: int-or-pair arguments, padding, output sizes and layout.

``prepare_geometry`` validates stride, padding and dilation once, at the operators' boundary, and
turns any padding into the symmetric zero padding the per-sample convolution paths take.
``output_shape`` and ``output_memory_format`` describe the result the same way for the kernels and
for the fake kernels that stand in for them under torch.compile and torch.export.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Geometry",
    "IntOrPair",
    "output_memory_format",
    "output_shape",
    "output_size",
    "prepare_geometry",
    "resolve_padding",
    "to_pair",
]

IntOrPair = int | Sequence[int]
# (stride, padding, dilation), each an (h, w) pair; the padding is symmetric zero padding.
Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def to_pair(value: IntOrPair, name: str) -> tuple[int, int]:
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
    pad_h, pad_w = to_pair(padding, "padding")
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pad_w, pad_w, pad_h, pad_h


def output_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Output length along one axis of an unpadded convolution."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def output_shape(x: Tensor, weight_shape: Sequence[int], geometry: Geometry) -> tuple[int, int, int, int]:
    """(N, C2, H_out, W_out) of a convolution of x (N, C1, H, W) with weights (C2, C1/g, kh, kw)."""
    (sh, sw), (ph, pw), (dh, dw) = geometry
    kh, kw = weight_shape[2], weight_shape[3]
    height, width = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    return x.shape[0], weight_shape[0], output_size(height, kh, sh, dh), output_size(width, kw, sw, dw)


def output_memory_format(x: Tensor) -> torch.memory_format:
    """The layout of a convolution's output for input x (N, C1, H, W): channels_last in, channels_last out.

    A tensor that is contiguous both ways (C1 = 1, or H = W = 1) counts as contiguous, as in
    ``nn.Conv2d``.
    """
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def prepare_geometry(
    input: Tensor,
    kernel_size: Sequence[int],
    stride: IntOrPair,
    padding: IntOrPair | str,
    dilation: IntOrPair,
) -> tuple[Tensor, Geometry]:
    """Validates the convolution's geometry and turns any padding into a symmetric one.

    Args:
        input: (N, C1, H, W).
        kernel_size: (kh, kw).
        stride, padding, dilation: as ``aw_conv2d`` takes them.

    Returns:
        ``(input, (stride, padding, dilation))``: the input, zero-padded here only when the padding
        is asymmetric, and the three pairs the convolution paths take.
    """
    stride_pair = to_pair(stride, "stride")
    dilation_pair = to_pair(dilation, "dilation")
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
    if pads[0] == pads[1] and pads[2] == pads[3]:
        padding_pair = (pads[2], pads[0])  # symmetric: the convolution pads, no copy
    else:
        input, padding_pair = F.pad(input, pads), (0, 0)
    return input, (stride_pair, padding_pair, dilation_pair)
