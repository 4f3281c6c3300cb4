"""The fused operator's kernels made of ATen calls: the ``grouped``, ``bmm`` and ``loop`` paths.

The ``full`` attention has N * C2 * C1/g * kh * kw values, in deep layers far more than the
convolution's input and output together, so producing, storing and re-reading it dominates the
cost on a CPU. These kernels take the small tensors the attention is made from (its *logit
factors*, shapes in ``awconv.ops.fused``) instead, and

* generate the modulation factor ``1 + attention`` with one matrix product over a chunk of samples
  (reading the generator's head once per chunk), gate it and multiply the weight into it in place;
* convolve; on the ``bmm`` path directly in the tap-major layout the matrix product produced;
* in backward, generate the factor again, so no tensor of the attention's size outlives a call.

Inside, tensors of the attention's size are *tap-major*: (n, T, C2, C1/g), T = kh * kw. They are
registered in ``awconv.ops.kernels`` under their path's name; ``fused_forward`` and
``fused_backward`` follow that table's kernel contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from awconv.ops.geometry import output_shape
from awconv.ops.paths import per_sample_conv, per_sample_conv_backward

if TYPE_CHECKING:
    from awconv.ops.kernels import FusedProblem

__all__ = ["fused_backward", "fused_forward"]


def _logits(kind: str, factors: Sequence[Tensor], samples: slice, out_channels: int) -> Tensor:
    """Logits of some samples, tap-major: (n, P, C2, C1/g), new memory."""
    if kind == "full":
        hidden, head_weight, head_bias = factors
        hidden = hidden[samples].transpose(1, 2)  # (n, P, d)
        logits = F.linear(hidden, head_weight, head_bias)  # one GEMM over all n * P rows
        return logits.view(hidden.shape[0], hidden.shape[1], out_channels, -1)
    factor_out, factor_in = factors
    # A batched matrix product (n * P of them) writes the logits once, contiguous. einsum would
    # broadcast-multiply for R = 1 and leave a strided result that every later pass copies.
    return torch.matmul(factor_out[samples].permute(0, 3, 1, 2), factor_in[samples].permute(0, 3, 1, 2))


def _logits_backward(
    kind: str, factors: Sequence[Tensor], grads: list[Tensor | None], samples: slice, grad_logits: Tensor
) -> None:
    """Adds the gradients of some samples to ``grads`` (zero-initialised; None where unneeded).

    Args:
        grad_logits: (n, P, C2, C1/g).
    """
    if kind == "full":
        hidden, head_weight, _ = factors
        grad_flat = grad_logits.flatten(2)  # (n, P, C2 * C1/g)
        if grads[0] is not None:
            grads[0][samples] += torch.matmul(grad_flat, head_weight).transpose(1, 2)
        if grads[1] is not None:
            rows = hidden[samples].transpose(1, 2).reshape(-1, hidden.shape[1])  # (n * P, d)
            grads[1] += grad_flat.reshape(-1, grad_flat.shape[-1]).t() @ rows
        if grads[2] is not None:
            grads[2] += grad_flat.sum(dim=(0, 1))
        return
    factor_out, factor_in = factors
    if grads[0] is not None:
        grads[0][samples] += torch.einsum("npab,nrbp->narp", grad_logits, factor_in[samples])
    if grads[1] is not None:
        grads[1][samples] += torch.einsum("npab,narp->nrbp", grad_logits, factor_out[samples])


class _GatePlan(NamedTuple):
    """How a gate becomes the factor ``m = 1 + gate(z)`` in few passes and without cancellation.

    ``q = activation(logit_scale * z)`` and ``m = weight_scale * q + offset``; the scales are applied
    to small tensors (the logit factors, the weight), never to the attention-sized ones. For tanh,
    ``1 + tanh(z) = 2 sigmoid(2 z)``, which also keeps its relative precision where tanh nears -1.
    """

    logit_scale: float
    weight_scale: float
    offset: bool
    sigmoid: bool


_GATE_PLANS = {
    "tanh": _GatePlan(logit_scale=2.0, weight_scale=2.0, offset=False, sigmoid=True),
    "sigmoid": _GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=True),
    "none": _GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=False),
}

# The factors that carry the logits' scale: hidden and bias (full), factor_out (lowrank).
_SCALED_FACTORS = {"full": (0, 2), "lowrank": (0,)}


def _scale_factors(kind: str, factors: Sequence[Tensor], scale: float) -> list[Tensor]:
    """The logit factors with the logits multiplied by ``scale`` (small tensors only)."""
    return [f * scale if i in _SCALED_FACTORS[kind] and scale != 1 else f for i, f in enumerate(factors)]


def _tap_major(weight: Tensor) -> Tensor:
    """(C2, C1/g, kh, kw) -> (T, C2, C1/g), contiguous."""
    return weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1]).contiguous()


def _kernels(
    kind: str, plan: _GatePlan, factors, tap_weight: Tensor, samples: slice, in_place: bool
) -> tuple[Tensor, Tensor]:
    """Gate values q (n, P, C2, C1/g) and modulated kernels (n, T, C2, C1/g) of some samples.

    ``factors`` are already scaled by ``plan.logit_scale``. With ``in_place`` and P = T the kernels
    overwrite q (forward needs no more): one pass for the gate, one for the modulation.
    """
    gated = _logits(kind, factors, samples, tap_weight.shape[1])
    if plan.sigmoid:
        gated.sigmoid_()
    out = gated if in_place and gated.shape[1] == tap_weight.shape[0] else None
    if plan.offset:  # W (1 + q)
        return gated, torch.addcmul(tap_weight, tap_weight, gated, out=out)
    return gated, torch.mul(tap_weight * plan.weight_scale, gated, out=out)


def _standard(kernels: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Tap-major kernels (n, T, C2, C1/g) -> (n, C2, C1/g, kh, kw), contiguous."""
    n, _, c2, c1g = kernels.shape
    return kernels.permute(0, 2, 3, 1).reshape(n, c2, c1g, *kernel_size)


def _tap_columns(x: Tensor, kernel_size: tuple[int, int], geometry, groups: int) -> Tensor:
    """The input's columns per tap and group: (n, T, g, C1/g, L)."""
    stride, padding, dilation = geometry
    columns = F.unfold(x, kernel_size, dilation, padding, stride)  # (n, C1 * T, L), channel-major
    n, taps = x.shape[0], kernel_size[0] * kernel_size[1]
    columns = columns.view(n, groups, -1, taps, columns.shape[-1])  # (n, g, C1/g, T, L)
    return columns.permute(0, 3, 1, 2, 4).contiguous()


def _bmm_tap_major(columns: Tensor, kernels: Tensor, groups: int) -> Tensor:
    """Sum over taps of kernels[n, t] @ columns[n, t]: (n, T, g, C1/g, L), (n, T, C2, C1/g) -> (n, C2, L)."""
    n, taps, c2, c1g = kernels.shape
    per_tap = torch.matmul(kernels.view(n, taps, groups, c2 // groups, c1g), columns)  # (n, T, g, C2/g, L)
    return per_tap.sum(dim=1).view(n, c2, -1)


def fused_forward(
    path: str, x: Tensor, weight: Tensor, factors: Sequence[Tensor], problem: FusedProblem
) -> Tensor:
    """Generates, gates, modulates and convolves chunk by chunk along ``path``.

    Args:
        path: ``"grouped"``, ``"bmm"`` or ``"loop"``.
        x: (N, C1, H, W).
        weight: (C2, C1/g, kh, kw).
        factors: the logit factors of ``problem.generator``.
        problem: generator, gate, geometry, groups and chunk size.

    Returns:
        (N, C2, H_out, W_out).
    """
    kind, geometry, groups, chunk = problem.generator, problem.geometry, problem.groups, problem.chunk_size
    x = x.contiguous()
    (out_channels, _, kh, kw), batch = weight.shape, x.shape[0]
    out_size = output_shape(x, weight.shape, geometry)[2:]
    tap_weight, plan = _tap_major(weight), _GATE_PLANS[problem.gate]
    scaled = _scale_factors(kind, factors, plan.logit_scale)
    outputs = []
    for start in range(0, batch, chunk):
        samples = slice(start, min(start + chunk, batch))
        _, kernels = _kernels(kind, plan, scaled, tap_weight, samples, in_place=True)
        if path == "bmm":
            columns = _tap_columns(x[samples], (kh, kw), geometry, groups)
            out = _bmm_tap_major(columns, kernels, groups).view(-1, out_channels, *out_size)
        else:
            out = per_sample_conv(path, x[samples], _standard(kernels, (kh, kw)), *geometry, groups)
        outputs.append(out)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def fused_backward(
    path: str,
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    problem: FusedProblem,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """Gradients of ``fused_forward`` w.r.t. (x, weight, *factors), None where ``needs`` is False.

    The gate values and the kernels are generated again, chunk by chunk, and their buffers reused.
    """
    kind, geometry, groups, chunk = problem.generator, problem.geometry, problem.groups, problem.chunk_size
    x = x.contiguous()
    (out_channels, in_per_group, kh, kw), batch = weight.shape, x.shape[0]
    tap_weight, plan = _tap_major(weight), _GATE_PLANS[problem.gate]
    scaled = _scale_factors(kind, factors, plan.logit_scale)
    grad_out = grad_out.contiguous()
    grad_x = torch.empty_like(x) if needs[0] else None
    grad_tap_weight = torch.zeros_like(tap_weight) if needs[1] else None
    factor_grads = [torch.zeros_like(f) if need else None for f, need in zip(factors, needs[2:], strict=True)]
    stride, padding, dilation = geometry
    for start in range(0, batch, chunk):
        samples = slice(start, min(start + chunk, batch))
        gated, kernels = _kernels(kind, plan, scaled, tap_weight, samples, in_place=False)
        n = kernels.shape[0]
        if path == "bmm":
            columns = _tap_columns(x[samples], (kh, kw), geometry, groups)  # (n, T, g, C1/g, L)
            grad_block = grad_out[samples].view(n, 1, groups, out_channels // groups, -1)
            grad_kernels = torch.matmul(grad_block, columns.transpose(-1, -2)).view_as(kernels)
            if grad_x is not None:
                grouped_kernels = kernels.view(n, -1, groups, out_channels // groups, in_per_group)
                grad_columns = torch.matmul(grouped_kernels.transpose(-1, -2), grad_block)  # (n,T,g,C1/g,L)
                grad_columns = grad_columns.permute(0, 2, 3, 1, 4).reshape(n, -1, grad_columns.shape[-1])
                grad_x[samples] = F.fold(grad_columns, x.shape[2:], (kh, kw), dilation, padding, stride)
        else:
            chunk_grad_x, grad_standard = per_sample_conv_backward(
                path, x[samples], _standard(kernels, (kh, kw)), grad_out[samples], *geometry, groups
            )
            if grad_x is not None:
                grad_x[samples] = chunk_grad_x
            grad_kernels = grad_standard.flatten(3).permute(0, 3, 1, 2)  # (n, T, C2, C1/g), a view
        if grad_tap_weight is not None:  # dL/dW = sum_n dL/dK * (weight_scale q + offset)
            product = torch.mul(grad_kernels, gated, out=kernels).sum(dim=0)  # reuses a free buffer
            grad_tap_weight.add_(product, alpha=plan.weight_scale)
            if plan.offset:
                grad_tap_weight += grad_kernels.sum(dim=0)
        grad_gated = grad_kernels.mul_(
            tap_weight if plan.weight_scale == 1 else tap_weight * plan.weight_scale
        )
        if gated.shape[1] == 1:
            grad_gated = grad_gated.sum(dim=1, keepdim=True)
        if plan.sigmoid:  # dq/dz' = q (1 - q), using up q
            grad_gated.mul_(gated).mul_(gated.neg_().add_(1))
        _logits_backward(kind, scaled, factor_grads, samples, grad_gated)
    for index in _SCALED_FACTORS[kind]:  # the chain rule through the logits' scale
        if factor_grads[index] is not None and plan.logit_scale != 1:
            factor_grads[index].mul_(plan.logit_scale)
    grad_weight = None
    if grad_tap_weight is not None:
        grad_weight = grad_tap_weight.view(kh, kw, out_channels, in_per_group).permute(2, 3, 0, 1)
    return [grad_x, grad_weight, *factor_grads]
