"""Floating-point operation counts of the awconv operators, for ``torch.utils.flop_counter``.

``FlopCounterMode`` cannot see inside a custom operator, so each one registers its count, in the
counter's convention (a multiply-add is 2 FLOPs; elementwise work is not counted), so that an AW
model and its plain twin are counted alike:

* the per-sample convolution: as ``aten.convolution`` with the same shapes; backward: the input
  gradient and the per-sample kernel gradient as ``aten.convolution_backward`` counts them;
* the ``"full"`` generator's head GEMM: hidden (N, d, P) times head weight (C2*C1/g, d) gives the
  logits (N, C2*C1/g, P): ``2 * N * C2*C1/g * d * P``;
* the ``"lowrank"`` generator's factor product: factor_out (N, C2, R, P) times factor_in
  (N, R, C1/g, P): ``2 * N * C2 * R * C1/g * P``;
* backward: each factor gradient costs one more product of that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

import awconv.ops.operators  # noqa: F401  (defines torch.ops.awconv.*)

__all__: list[str] = []

Shape = Sequence[int]


def _conv_flops(x_shape: Shape, weight_shape: Shape, out_shape: Shape) -> int:
    """x (N, C1, H, W), weight (C2, C1/g, kh, kw), out (N, C2, H_out, W_out)."""
    return conv_flop_count(list(x_shape), list(weight_shape), list(out_shape))


def _swap01(shape: Shape) -> list[int]:
    """The shape with its first two dimensions swapped (the weight gradient as a convolution)."""
    return [shape[1], shape[0], *shape[2:]]


def _conv_backward_flops(
    grad_shape: Shape, x_shape: Shape, weight_shape: Shape, needs: Sequence[bool]
) -> int:
    """grad_out (N, C2, H_out, W_out); the input gradient if ``needs[0]``, the kernels' if ``needs[1]``."""
    flops = 0
    if needs[0]:
        flops += conv_flop_count(list(grad_shape), list(weight_shape), list(x_shape), transposed=True)
    if needs[1]:
        flops += conv_flop_count(_swap01(x_shape), _swap01(grad_shape), _swap01(weight_shape))
    return flops


def _generator_flops(generator: str, factor_a_shape: Shape, factor_b_shape: Shape) -> int:
    """The product that makes the logits from the two factors (shapes in the module docstring)."""
    if generator == "full":
        samples, hidden, positions = factor_a_shape
        return 2 * samples * factor_b_shape[0] * hidden * positions
    samples, out_channels, rank, positions = factor_a_shape
    return 2 * samples * out_channels * rank * factor_b_shape[2] * positions


@register_flop_formula(torch.ops.awconv.aw_conv2d)
def _aw_conv2d_flops(x_shape, weight_shape, *args, out_shape: Shape, **kwargs) -> int:
    return _conv_flops(x_shape, weight_shape, out_shape)


@register_flop_formula(torch.ops.awconv.aw_conv2d_backward)
def _aw_conv2d_backward_flops(grad_shape, x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    needs = args[-1]
    return _conv_backward_flops(grad_shape, x_shape, weight_shape, [needs[0], needs[1] or needs[2]])


@register_flop_formula(torch.ops.awconv.aw_conv2d_fused)
def _fused_flops(
    x_shape, weight_shape, a_shape, b_shape, c_shape, generator, *args, out_shape, **kwargs
) -> int:
    return _conv_flops(x_shape, weight_shape, out_shape) + _generator_flops(generator, a_shape, b_shape)


@register_flop_formula(torch.ops.awconv.aw_conv2d_fused_backward)
def _fused_backward_flops(
    grad_shape, x_shape, weight_shape, a_shape, b_shape, c_shape, generator, *args, out_shape=None, **kwargs
) -> int:
    needs = args[-1]
    conv = _conv_backward_flops(grad_shape, x_shape, weight_shape, [needs[0], any(needs[1:])])
    return conv + (int(needs[2]) + int(needs[3])) * _generator_flops(generator, a_shape, b_shape)
