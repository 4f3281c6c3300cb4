"""The kernel table behind ``torch.ops.awconv.aw_conv2d_fused``: ``impl`` name -> forward and backward.

The operator takes ``impl`` as an argument and looks it up here, in forward and in backward alike;
``impl="auto"`` becomes a name through ``choose_fused_kernel``. A device kernel plugs in with one
call, made when its module is imported::

    register_fused_kernel("triton", forward, backward, device_types=("cuda",))

after which ``AWConv2d(..., impl="triton")`` and ``aw_conv2d_fused(..., impl="triton")`` run it,
under eager, torch.compile and torch.export alike (the fake kernel, the autograd formula and the
composite form for ONNX and torch.func are the operator's, not the kernel's). To make ``auto`` pick
it, add its rule to ``choose_fused_kernel``.

Registered here: the ATen paths ``grouped``, ``bmm`` and ``loop`` (any device) and ``cpp``, the
compiled CPU kernel (``awconv.ops.fused_cpu``); ``triton`` registers itself
(``awconv.ops.triton_registration``).

A kernel's contract, for x (N, C1, H, W) with N >= 1, weight (C2, C1/g, kh, kw) and the logit
factors of ``awconv.ops.fused`` (every tensor on one device, in one dtype; autocast is off):

* ``forward(x, weight, factors, problem) -> out``: (N, C2, H_out, W_out) in any layout;
* ``backward(grad_out, x, weight, factors, problem, needs) -> [grad_x, grad_weight, *grad_factors]``:
  one entry per tensor, None where ``needs`` (in the same order) is False; any layout.

The operator puts the results into the layouts its fake kernels promise (output and grad_x in x's
memory format, the others contiguous), so kernels may take x as it comes, NCHW or channels_last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from torch import Tensor

from awconv.ops import cpu_extension
from awconv.ops.fused_aten import fused_backward, fused_forward
from awconv.ops.fused_cpu import cpp_backward, cpp_forward
from awconv.ops.geometry import Geometry
from awconv.ops.paths import PATHS, choose_impl

__all__ = [
    "CPP_MAX_KERNEL_VALUES",
    "CPP_MAX_OUTPUT_PIXELS",
    "FUSED_BMM_MIN_KERNEL_VALUES",
    "FUSED_KERNELS",
    "FusedKernel",
    "FusedProblem",
    "choose_fused_kernel",
    "fused_impls",
    "register_fused_kernel",
]


@dataclass(frozen=True)
class FusedProblem:
    """Everything about one fused AW-convolution call except its tensors.

    Attributes:
        generator: ``"full"`` or ``"lowrank"``: which logit factors the call has.
        gate: ``"tanh"``, ``"sigmoid"`` or ``"none"``.
        geometry: (stride, padding, dilation) pairs; the padding is symmetric zero padding.
        groups: the convolution's groups.
        chunk_size: samples whose attention may exist at once, 1 <= chunk_size <= N.
    """

    generator: str
    gate: str
    geometry: Geometry
    groups: int
    chunk_size: int


FusedForward = Callable[[Tensor, Tensor, Sequence[Tensor], FusedProblem], Tensor]
FusedBackward = Callable[
    [Tensor, Tensor, Tensor, Sequence[Tensor], FusedProblem, Sequence[bool]], list[Tensor | None]
]


class FusedKernel(NamedTuple):
    """One implementation of the fused operator.

    Attributes:
        forward: the forward kernel (contract in the module docstring).
        backward: the backward kernel.
        device_types: the device types it runs on (``("cuda",)``), or None for any.
    """

    forward: FusedForward
    backward: FusedBackward
    device_types: tuple[str, ...] | None


FUSED_KERNELS: dict[str, FusedKernel] = {}


def register_fused_kernel(
    name: str,
    forward: FusedForward,
    backward: FusedBackward,
    *,
    device_types: Sequence[str] | None = None,
) -> None:
    """Makes ``impl=name`` run ``forward`` and ``backward`` (contract in the module docstring)."""
    if name == "auto" or name in FUSED_KERNELS:
        raise ValueError(f"name must be new and not 'auto', got {name!r}")
    FUSED_KERNELS[name] = FusedKernel(
        forward, backward, None if device_types is None else tuple(device_types)
    )


def fused_impls() -> tuple[str, ...]:
    """What ``impl`` takes: ``"auto"`` and every registered kernel's name."""
    return ("auto", *FUSED_KERNELS)


# ``auto`` takes the fused ``bmm`` path only for kernels of at least this many values per sample
# (C2 * C1/g * kh * kw; 256 -> 256 3x3 has 590 k, 64 -> 64 37 k), and only where ``choose_impl``
# would. Measured on the fused operator (lever_history.md, issue 15): at ResNet-20's widths bmm is
# 1.7-2.4x slower than grouped (N=128, one thread); at 256@14 and 512@7 it is faster with 2 threads.
FUSED_BMM_MIN_KERNEL_VALUES = 2**18


# ``auto`` takes the compiled CPU kernel (``impl="cpp"``) for kernels of at most this many values per
# sample and outputs of at most this many pixels: ResNet-20's layers from its second stage on (and
# all of them at 16 px), where it was faster in every A/B run at batch 128 (lever_history.md, issue
# 15), and the training step at ``make demo``'s shape 11-13% faster. At 32 x 32 outputs it lost at
# batch 8, and AW-ResNet-50 (batch 8, 2 threads) ran slower on it: those stay on the ATen paths.
CPP_MAX_KERNEL_VALUES = 2**16
CPP_MAX_OUTPUT_PIXELS = 16 * 16


def choose_fused_kernel(device_type: str, chunk_size: int, output_pixels: int, kernel_values: int) -> str:
    """The kernel ``impl="auto"`` runs for a device type, a chunk size, a per-sample output area and
    the number of values in the convolution's weight (C2 * C1/g * kh * kw).

    On a CPU with the compiled kernel built (``awconv.ops.cpu_extension``), ``"cpp"`` for small
    kernels and outputs (``CPP_MAX_KERNEL_VALUES``, ``CPP_MAX_OUTPUT_PIXELS``) beyond batch 1.
    Otherwise the ATen paths by ``awconv.ops.paths.choose_impl`` (measured on a CPU with the
    attention given), except that kernels smaller than ``FUSED_BMM_MIN_KERNEL_VALUES`` stay off
    ``bmm``: the fused ``grouped`` path's passes over them run in cache-sized chunks.
    """
    impl = choose_impl(chunk_size, output_pixels)
    if (
        device_type == "cpu"
        and impl != "loop"
        and kernel_values <= CPP_MAX_KERNEL_VALUES
        and output_pixels <= CPP_MAX_OUTPUT_PIXELS
        and cpu_extension.available()
    ):
        return "cpp"
    return "grouped" if impl == "bmm" and kernel_values < FUSED_BMM_MIN_KERNEL_VALUES else impl


for _path in PATHS:  # the ATen kernels, for every device
    register_fused_kernel(_path, partial(fused_forward, _path), partial(fused_backward, _path))
register_fused_kernel("cpp", cpp_forward, cpp_backward, device_types=("cpu",))
