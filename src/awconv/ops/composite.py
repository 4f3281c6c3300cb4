"""Both AW-convolution operators in differentiable ATen calls only: the portable form.

The kernels behind ``torch.ops.awconv.*`` are fast but opaque: autograd differentiates them once,
and exporters see one custom node. This module writes the same operators with standard tensor
operations and no Python control flow on the batch size, so that

* ONNX export (``torch.onnx.export(..., dynamo=True)``) and ``torch.jit.trace`` record standard
  operators with a symbolic batch;
* ``torch.func`` transforms (``grad``, ``vmap``, ``jvp`` over ``functional_call``) work through
  their own rules for every operation;
* double backward (gradient penalties, MAML) differentiates the backward again.

The convolution is im2col and one matrix product batched over the samples and groups:

    out[n, g] = kernels[n, g] (C2/g, C1/g * kh * kw) @ unfold(x)[n, g] (C1/g * kh * kw, H_out * W_out)

In ONNX ``unfold`` becomes Pad and a Gather over index ranges of the taps, and the product one
MatMul whose leading dimension is the symbolic batch: standard operators throughout (ONNX's
``Conv`` cannot serve, since its ``group`` attribute is static and a grouped convolution would bake
in the batch). It materialises the modulated kernels (N, C2, C1/g, kh, kw); the kernels of
``awconv.ops.kernels`` do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.ops.geometry import Geometry, output_memory_format, output_shape

__all__ = [
    "composite_aw_conv2d",
    "composite_aw_conv2d_fused",
    "composite_vjp",
    "modulation_factor",
    "unfold_conv",
    "wants_composite",
]


def wants_composite() -> bool:
    """True where the opaque operators cannot serve: ONNX export, TorchScript tracing, torch.func.

    ONNX export traces with ``torch.export``, under which ``torch.compiler.is_compiling()`` is
    true as under torch.compile; eager calls pay only for the two cheap checks.
    """
    if torch.compiler.is_compiling():
        return torch.onnx.is_in_onnx_export()
    return torch.jit.is_tracing() or torch._C._are_functorch_transforms_active()


def unfold_conv(x: Tensor, kernels: Tensor, geometry: Geometry, groups: int) -> Tensor:
    """Convolves each sample with its own kernels: im2col, then one matrix product batched over (N, g).

    Args:
        x: (N, C1, H, W).
        kernels: (N, C2, C1/g, kh, kw).
        geometry: (stride, padding, dilation) pairs; padding is zero padding on both sides.
        groups: the convolution's groups g.

    Returns:
        (N, C2, H_out, W_out), in x's memory format.
    """
    stride, padding, dilation = geometry
    n, c2, c1g, kh, kw = kernels.shape
    _, _, out_h, out_w = output_shape(x, kernels.shape[1:], geometry)
    columns = F.unfold(x, (kh, kw), dilation, padding, stride)  # (N, C1 * kh * kw, L), channel-major
    columns = columns.reshape(n, groups, c1g * kh * kw, out_h * out_w)
    out = torch.matmul(kernels.reshape(n, groups, c2 // groups, c1g * kh * kw), columns)  # (N, g, C2/g, L)
    return out.reshape(n, c2, out_h, out_w).contiguous(memory_format=output_memory_format(x))


def _logits(generator: str, factors: Sequence[Tensor], out_channels: int, in_per_group: int) -> Tensor:
    """The logits (N, C2, C1/g, P) from the logit factors (shapes in ``awconv.ops.fused``).

    Every reshape names its sizes: a -1 beside a symbolic batch would become shape arithmetic
    in an exported graph.
    """
    if generator == "full":
        hidden, head_weight, head_bias = factors
        logits = torch.matmul(head_weight, hidden) + head_bias.unsqueeze(-1)  # (N, C2 * C1/g, P)
        return logits.reshape(hidden.shape[0], out_channels, in_per_group, hidden.shape[-1])
    factor_out, factor_in = factors
    per_tap = torch.matmul(factor_out.permute(0, 3, 1, 2), factor_in.permute(0, 3, 1, 2))  # (N, P, C2, C1/g)
    return per_tap.permute(0, 2, 3, 1)


def modulation_factor(
    generator: str, gate: str, factors: Sequence[Tensor], weight_shape: Sequence[int]
) -> Tensor:
    """``1 + gate(logits)``, expanded to every tap: (N, C2, C1/g, kh, kw).

    ``1 + tanh(z)`` is computed as ``2 sigmoid(2 z)``, equal but without cancellation where
    ``tanh(z)`` nears -1 (the kernels do the same).
    """
    c2, c1g, kh, kw = weight_shape
    logits = _logits(generator, factors, c2, c1g)
    if gate == "tanh":
        factor = 2 * torch.sigmoid(2 * logits)
    elif gate == "sigmoid":
        factor = 1 + torch.sigmoid(logits)
    else:
        factor = 1 + logits
    n = logits.shape[0]
    return factor.expand(n, c2, c1g, kh * kw).reshape(n, c2, c1g, kh, kw)


def composite_aw_conv2d_fused(
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    generator: str,
    gate: str,
    geometry: Geometry,
    groups: int,
) -> Tensor:
    """``torch.ops.awconv.aw_conv2d_fused`` in standard operations.

    x: (N, C1, H, W), weight: (C2, C1/g, kh, kw), factors as ``awconv.ops.fused``; returns
    (N, C2, H_out, W_out).
    """
    kernels = weight * modulation_factor(generator, gate, factors, weight.shape)
    return unfold_conv(x, kernels, geometry, groups)


def composite_aw_conv2d(
    x: Tensor, weight: Tensor, attention: Tensor, residual: bool, geometry: Geometry, groups: int
) -> Tensor:
    """``torch.ops.awconv.aw_conv2d`` in standard operations.

    x: (N, C1, H, W), weight: (C2, C1/g, kh, kw), attention: (N, C2, C1/g, kh, kw); returns
    (N, C2, H_out, W_out).
    """
    kernels = torch.addcmul(weight, weight, attention) if residual else weight * attention
    return unfold_conv(x, kernels, geometry, groups)


def composite_vjp(
    function, tensors: Sequence[Tensor], needs: Sequence[bool], grad_output: Tensor
) -> list[Tensor | None]:
    """Gradients of ``function(*tensors)`` against ``grad_output`` that can be differentiated again.

    Each tensor enters through a fresh alias, so each gradient is the partial derivative for its
    own argument: a factor computed from the input (the generator's hidden features) adds its
    path to the input's gradient through the outer graph, not here as well.

    Args:
        function: a composite form of an operator, called on ``tensors``.
        tensors: its tensor arguments, as saved for backward (still attached to the graph).
        needs: for each tensor, whether its gradient is wanted.
        grad_output: the output's gradient.

    Returns:
        One gradient per tensor, None where not wanted.
    """
    with torch.enable_grad():
        aliases = [tensor.view_as(tensor) for tensor in tensors]
        out = function(*aliases)
        wanted = [alias for alias, need in zip(aliases, needs, strict=True) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad_output, create_graph=True))
    return [next(grads) if need else None for need in needs]
