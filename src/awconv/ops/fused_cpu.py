"""``impl="cpp"``: the fused operator on the compiled CPU kernel, chunk by chunk.

Per chunk of samples, ATen makes the gate values q (the head GEMM over the chunk and the sigmoid,
in the kernel's transposed tap-major layout (n, P, C1/g, C2)); the compiled kernel
(``awconv.ops.cpu_extension``) then, for each sample, modulates the weight into the sample's
kernels, unfolds the sample and runs the convolution's matrix products while both are in cache.
In backward it also turns the kernels' gradient into dL/dW and, over q, into the logits' gradient,
in the same pass; ATen's GEMMs then give the generator's gradients. The chunks are those of the
``grouped`` path (about ``CACHE_CHUNK_BYTES`` of kernels), and no tensor of the attention's size
outlives a call.

The compiled kernel computes in float32. Other dtypes, and machines where it is not built, run the
``grouped`` kernel of ``awconv.ops.fused_aten`` instead: the same results, in pure PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from awconv.ops import cpu_extension
from awconv.ops.fused_aten import (
    GATE_PLANS,
    SCALED_FACTORS,
    GatePlan,
    cache_chunk,
    fused_backward,
    fused_forward,
    logits,
    logits_backward,
    scale_factors,
)
from awconv.ops.geometry import output_shape

if TYPE_CHECKING:
    from awconv.ops.kernels import FusedProblem

__all__ = ["compiled", "cpp_backward", "cpp_forward"]


def compiled(x: Tensor) -> bool:
    """Whether the compiled kernel runs for x: a float32 CPU tensor, with the library loaded."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and cpu_extension.available()


def _geometry(weight: Tensor, problem: FusedProblem) -> list[int]:
    """[kh, kw, sh, sw, ph, pw, dh, dw], as the compiled kernel takes it."""
    (sh, sw), (ph, pw), (dh, dw) = problem.geometry
    return [weight.shape[2], weight.shape[3], sh, sw, ph, pw, dh, dw]


def _transposed_factors(kind: str, factors: Sequence[Tensor], weight: Tensor) -> list[Tensor]:
    """Logit factors whose logits come out (n, P, C1/g, C2): the kernel's layout (small tensors).

    ``"full"``: the head's rows (and bias) reordered from (C2, C1/g) to (C1/g, C2); ``"lowrank"``:
    the two factors swapped and transposed (views), since (A B)^T = B^T A^T.
    """
    out_channels, in_per_group = weight.shape[:2]
    if kind == "full":
        hidden, head_weight, head_bias = factors
        rows = head_weight.view(out_channels, in_per_group, -1).transpose(0, 1).reshape(head_weight.shape)
        return [hidden, rows, head_bias.view(out_channels, in_per_group).t().reshape(-1)]
    factor_out, factor_in = factors
    return [factor_in.transpose(1, 2), factor_out.transpose(1, 2)]


def _untransposed_grads(kind: str, grads: list[Tensor | None], weight: Tensor) -> list[Tensor | None]:
    """The gradients of ``_transposed_factors``' tensors as gradients of the original factors."""
    out_channels, in_per_group = weight.shape[:2]
    if kind == "full":
        hidden, rows, bias = grads
        if rows is not None:
            rows = rows.view(in_per_group, out_channels, -1).transpose(0, 1).reshape(rows.shape)
        if bias is not None:
            bias = bias.view(in_per_group, out_channels).t().reshape(-1)
        return [hidden, rows, bias]
    grad_in, grad_out = grads
    return [
        None if grad_out is None else grad_out.transpose(1, 2).contiguous(),
        None if grad_in is None else grad_in.transpose(1, 2).contiguous(),
    ]


def _weight_taps(weight: Tensor, plan: GatePlan) -> Tensor:
    """(C2, C1/g, kh, kw) -> (T, C1/g, C2), contiguous, times the plan's weight scale."""
    taps = weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[1], weight.shape[0])
    return (taps * plan.weight_scale if plan.weight_scale != 1 else taps).contiguous()


class _Setup(NamedTuple):
    """What forward and backward make alike before the chunks: small tensors and the chunk's buffer."""

    plan: GatePlan
    transposed: list[Tensor]  # the logit factors, scaled and transposed (``_transposed_factors``)
    weight_taps: Tensor  # (T, C1/g, C2)
    chunk: int
    buffer: Tensor | None  # (chunk, P, C1/g, C2): the gate values of ``"full"`` (``"lowrank"``: None)
    geometry: list[int]


def _setup(weight: Tensor, factors: Sequence[Tensor], problem: FusedProblem) -> _Setup:
    plan = GATE_PLANS[problem.gate]
    scaled = scale_factors(problem.generator, factors, plan.logit_scale)
    transposed = _transposed_factors(problem.generator, scaled, weight)
    chunk = cache_chunk(weight, problem.chunk_size)
    buffer = None
    if problem.generator == "full":
        buffer = weight.new_empty(chunk, factors[0].shape[-1], weight.shape[1], weight.shape[0])
    return _Setup(plan, transposed, _weight_taps(weight, plan), chunk, buffer, _geometry(weight, problem))


def _gates(setup: _Setup, problem: FusedProblem, weight: Tensor, samples: slice) -> Tensor:
    """Gate values q of some samples: (n, P, C1/g, C2), in the setup's buffer (``"full"``) or new memory."""
    out = None if setup.buffer is None else setup.buffer[: samples.stop - samples.start]
    gates = logits(problem.generator, setup.transposed, samples, weight.shape[1], out=out)
    return gates.sigmoid_() if setup.plan.sigmoid else gates


def _chunks(batch: int, chunk: int):
    for start in range(0, batch, chunk):
        yield slice(start, min(start + chunk, batch))


def cpp_forward(x: Tensor, weight: Tensor, factors: Sequence[Tensor], problem: FusedProblem) -> Tensor:
    """(N, C1, H, W) -> (N, C2, H_out, W_out); the kernel contract of ``awconv.ops.kernels``."""
    if not compiled(x):
        return fused_forward("grouped", x, weight, factors, problem)
    x, setup = x.contiguous(), _setup(weight, factors, problem)
    out = x.new_empty(output_shape(x, weight.shape, problem.geometry))
    for samples in _chunks(x.shape[0], setup.chunk):
        gates = _gates(setup, problem, weight, samples)
        torch.ops.awconv_cpu.forward_chunk(
            x[samples], gates, setup.weight_taps, float(setup.plan.offset), setup.geometry, problem.groups,
            out[samples],
        )  # fmt: skip
    return out


def cpp_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    problem: FusedProblem,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """[grad_x, grad_weight, *grad_factors], None where ``needs`` is False."""
    if not compiled(x):
        return fused_backward("grouped", grad_out, x, weight, factors, problem, needs)
    x, grad_out = x.contiguous(), grad_out.contiguous()
    kind, setup = problem.generator, _setup(weight, factors, problem)
    plan = setup.plan
    grad_x = torch.empty_like(x) if needs[0] else None
    grad_taps = torch.zeros_like(setup.weight_taps) if needs[1] else None
    factor_needs = needs[2:] if kind == "full" else needs[:1:-1]  # lowrank's factors swap places
    transposed_grads = [
        torch.zeros_like(f) if need else None for f, need in zip(setup.transposed, factor_needs, strict=True)
    ]
    for samples in _chunks(x.shape[0], setup.chunk):
        gates = _gates(setup, problem, weight, samples)
        torch.ops.awconv_cpu.backward_chunk(
            grad_out[samples], x[samples], gates, setup.weight_taps, float(plan.offset), plan.sigmoid,
            setup.geometry, problem.groups, None if grad_x is None else grad_x[samples], grad_taps,
        )  # fmt: skip
        if any(factor_needs):  # the gates now hold dL/dz'
            logits_backward(kind, setup.transposed, transposed_grads, samples, gates)
    factor_grads = _untransposed_grads(kind, transposed_grads, weight)
    for index in SCALED_FACTORS[kind]:  # the chain rule through the logits' scale
        if factor_grads[index] is not None and plan.logit_scale != 1:
            factor_grads[index].mul_(plan.logit_scale)
    grad_weight = None
    if grad_taps is not None:
        grad_taps = grad_taps * plan.weight_scale if plan.weight_scale != 1 else grad_taps
        grad_weight = grad_taps.view(*weight.shape[2:], weight.shape[1], weight.shape[0]).permute(3, 2, 0, 1)
    return [grad_x, grad_weight, *factor_grads]
