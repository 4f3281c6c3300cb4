"""The fused operator's kernels made of ATen calls: the ``grouped``, ``bmm`` and ``loop`` paths.

The ``full`` attention has N * C2 * C1/g * kh * kw values, in deep layers far more than the
convolution's input and output together, so producing, storing and re-reading it dominates the
cost on a CPU. These kernels take the small tensors the attention is made from (its *logit
factors*, shapes in ``awconv.ops.fused``) instead, and

* generate the modulation factor ``1 + attention`` with one matrix product over a chunk of samples
  (reading the generator's head once per chunk), gate it and multiply the weight into it in place;
* convolve; on the ``bmm`` path directly in the tap-major layout the matrix product produced;
* in backward, generate the factor again, so no tensor of the attention's size outlives a call.

Inside, tensors of the attention's size have one of two layouts. On the ``bmm`` path they are
*tap-major*: (n, T, C2, C1/g), T = kh * kw, the layout of its sum over taps. On the ``grouped`` and
``loop`` paths they are in the *weight's layout*: (n, C2 * C1/g, T), which the convolutions take
and return as they are, so no pass over them is a copy or a strided read. They are registered in
``awconv.ops.kernels`` under their path's name; ``fused_forward`` and ``fused_backward`` follow
that table's kernel contract.
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

__all__ = [
    "CACHE_CHUNK_BYTES",
    "GATE_PLANS",
    "MIN_CHUNK",
    "SCALED_FACTORS",
    "GatePlan",
    "cache_chunk",
    "fused_backward",
    "fused_forward",
    "logits",
    "logits_backward",
    "scale_factors",
]


def logits(
    kind: str, factors: Sequence[Tensor], samples: slice, out_channels: int, out: Tensor | None = None
) -> Tensor:
    """Logits of some samples, tap-major: (n, P, C2, C1/g), in ``out[:n]`` (``"full"``) or new memory."""
    if kind == "full":
        hidden, head_weight, head_bias = factors
        hidden = hidden[samples].transpose(1, 2)  # (n, P, d)
        n, taps = hidden.shape[:2]
        rows = hidden.reshape(n * taps, -1)
        # One GEMM over all n * P rows, its output's long side contiguous: the same product in the
        # weight's layout (C2 * C1/g, P per sample) runs about 10x slower (lever_history.md).
        flat = torch.addmm(
            head_bias, rows, head_weight.t(), out=None if out is None else out[:n].view(n * taps, -1)
        )
        return flat.view(n, taps, out_channels, -1)
    factor_out, factor_in = factors
    # A batched matrix product (n * P of them) writes the logits once, contiguous. einsum would
    # broadcast-multiply for R = 1 and leave a strided result that every later pass copies.
    return torch.matmul(factor_out[samples].permute(0, 3, 1, 2), factor_in[samples].permute(0, 3, 1, 2))


def logits_backward(
    kind: str, factors: Sequence[Tensor], grads: list[Tensor | None], samples: slice, grad_logits: Tensor
) -> None:
    """Adds the gradients of some samples to ``grads`` (zero-initialised; None where unneeded).

    Args:
        grad_logits: (n, P, C2, C1/g).
    """
    if kind == "full":
        hidden, head_weight, _ = factors
        n, taps = grad_logits.shape[:2]
        grad_rows = grad_logits.reshape(n * taps, -1)  # (n * P, C2 * C1/g)
        # Both products write d rows with the long side contiguous: (n * P) x d or (C2 * C1/g) x d
        # outputs run 4-12x slower for a small d (lever_history.md, issue 15).
        if grads[0] is not None:  # (d, n * P) -> (n, d, P)
            grads[0][samples] += (head_weight.t() @ grad_rows.t()).view(-1, n, taps).transpose(0, 1)
        if grads[1] is not None:  # (d, C2 * C1/g) -> its transpose
            rows = hidden[samples].transpose(1, 2).reshape(n * taps, -1)  # (n * P, d)
            grads[1] += (rows.t() @ grad_rows).t()
        if grads[2] is not None:
            grads[2] += grad_rows.sum(dim=0)
        return
    factor_out, factor_in = factors
    if grads[0] is not None:
        grads[0][samples] += torch.einsum("npab,nrbp->narp", grad_logits, factor_in[samples])
    if grads[1] is not None:
        grads[1][samples] += torch.einsum("npab,narp->nrbp", grad_logits, factor_out[samples])


class GatePlan(NamedTuple):
    """How a gate becomes the factor ``m = 1 + gate(z)`` in few passes and without cancellation.

    ``q = activation(logit_scale * z)`` and ``m = weight_scale * q + offset``; the scales are applied
    to small tensors (the logit factors, the weight), never to the attention-sized ones. For tanh,
    ``1 + tanh(z) = 2 sigmoid(2 z)``, which also keeps its relative precision where tanh nears -1.
    """

    logit_scale: float
    weight_scale: float
    offset: bool
    sigmoid: bool


GATE_PLANS = {
    "tanh": GatePlan(logit_scale=2.0, weight_scale=2.0, offset=False, sigmoid=True),
    "sigmoid": GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=True),
    "none": GatePlan(logit_scale=1.0, weight_scale=1.0, offset=True, sigmoid=False),
}

# The factors that carry the logits' scale: hidden and bias (full), factor_out (lowrank).
SCALED_FACTORS = {"full": (0, 2), "lowrank": (0,)}


def scale_factors(kind: str, factors: Sequence[Tensor], scale: float) -> list[Tensor]:
    """The logit factors with the logits multiplied by ``scale`` (small tensors only)."""
    return [f * scale if i in SCALED_FACTORS[kind] and scale != 1 else f for i, f in enumerate(factors)]


def _tap_major(weight: Tensor) -> Tensor:
    """(C2, C1/g, kh, kw) -> (T, C2, C1/g), contiguous."""
    return weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1]).contiguous()


def _kernels(
    kind: str, plan: GatePlan, factors, tap_weight: Tensor, samples: slice, in_place: bool
) -> tuple[Tensor, Tensor]:
    """Gate values q (n, P, C2, C1/g) and modulated kernels (n, T, C2, C1/g) of some samples.

    ``factors`` are already scaled by ``plan.logit_scale``. With ``in_place`` and P = T the kernels
    overwrite q (forward needs no more): one pass for the gate, one for the modulation.
    """
    gated = logits(kind, factors, samples, tap_weight.shape[1])
    if plan.sigmoid:
        gated.sigmoid_()
    out = gated if in_place and gated.shape[1] == tap_weight.shape[0] else None
    if plan.offset:  # W (1 + q)
        return gated, torch.addcmul(tap_weight, tap_weight, gated, out=out)
    return gated, torch.mul(tap_weight * plan.weight_scale, gated, out=out)


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


class _Workspace(NamedTuple):
    """Buffers for one chunk's attention-sized tensors, reused by every chunk of a call."""

    gated: Tensor  # (chunk, P, C2 * C1/g), tap-major: the generator's side
    kernels: Tensor  # (chunk, C2 * C1/g, T), the weight's layout: the convolution's side


def _workspace(weight_rows: Tensor, factors: Sequence[Tensor], chunk: int) -> _Workspace:
    rows, taps = weight_rows.shape
    gated = weight_rows.new_empty(chunk, factors[0].shape[-1], rows)
    return _Workspace(gated, weight_rows.new_empty(chunk, rows, taps))


def _weight_layout_kernels(
    kind: str, plan: GatePlan, factors, weight_rows: Tensor, samples: slice, workspace: _Workspace
) -> tuple[Tensor, Tensor]:
    """Gate values q (n, P, C2 * C1/g), tap-major, and modulated kernels (n, C2 * C1/g, T).

    ``factors`` are scaled by ``plan.logit_scale`` and ``weight_rows`` (C2 * C1/g, T) by
    ``plan.weight_scale``. The head GEMM writes tap-major (its fast layout); the modulation's pass
    reads that and writes the weight's layout, so the change of layout costs no pass of its own.
    """
    n = samples.stop - samples.start
    out = workspace.gated if kind == "full" else None  # "lowrank" writes new memory
    gated = logits(kind, factors, samples, weight_rows.shape[0], out=out).flatten(2)  # (n, P, C2*C1/g)
    if plan.sigmoid:
        gated.sigmoid_()
    out, q = workspace.kernels[:n], gated.transpose(1, 2)  # (n, C2 * C1/g, P), a view
    if plan.offset:  # W (1 + q)
        return gated, torch.addcmul(weight_rows, weight_rows, q, out=out)
    return gated, torch.mul(weight_rows, q, out=out)


def _forward_tap_major(x, weight, scaled, plan, problem, samples) -> Tensor:
    """The ``bmm`` path on some samples: (n, C2, H_out, W_out)."""
    (out_channels, _, kh, kw), geometry = weight.shape, problem.geometry
    _, kernels = _kernels(problem.generator, plan, scaled, _tap_major(weight), samples, in_place=True)
    columns = _tap_columns(x[samples], (kh, kw), geometry, problem.groups)
    return _bmm_tap_major(columns, kernels, problem.groups).view(
        -1, out_channels, *output_shape(x, weight.shape, geometry)[2:]
    )


# The grouped and loop paths work through the batch in chunks of about this many bytes of
# attention-sized tensors, so that each pass over them (the head GEMM, the gate, the modulation,
# the gradient's passes) runs in the CPU's cache rather than in fresh memory, but never in chunks
# of fewer than MIN_CHUNK samples: per-sample convolutions that small lose more than the cache
# gains, most with 2 threads (benchmarks/lever_history.md, issue 15). The head is re-read per chunk.
CACHE_CHUNK_BYTES = 2 << 20
MIN_CHUNK = 8


def cache_chunk(weight: Tensor, chunk_size: int) -> int:
    """Samples per chunk: ``CACHE_CHUNK_BYTES`` of kernels, at least ``MIN_CHUNK``, at most ``chunk_size``."""
    per_sample = weight.numel() * weight.element_size()
    return min(chunk_size, max(MIN_CHUNK, CACHE_CHUNK_BYTES // per_sample))


def _weight_rows(weight: Tensor, plan: GatePlan) -> Tensor:
    """(C2, C1/g, kh, kw) -> (C2 * C1/g, T), times the plan's weight scale."""
    rows = weight.reshape(weight.shape[0] * weight.shape[1], -1)
    return rows * plan.weight_scale if plan.weight_scale != 1 else rows


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
    x = x.contiguous()
    plan = GATE_PLANS[problem.gate]
    scaled = scale_factors(problem.generator, factors, plan.logit_scale)
    weight_rows = _weight_rows(weight, plan)
    chunk = problem.chunk_size if path == "bmm" else cache_chunk(weight, problem.chunk_size)
    workspace = None if path == "bmm" else _workspace(weight_rows, scaled, chunk)
    outputs = []
    for start in range(0, x.shape[0], chunk):
        samples = slice(start, min(start + chunk, x.shape[0]))
        if path == "bmm":
            outputs.append(_forward_tap_major(x, weight, scaled, plan, problem, samples))
            continue
        _, kernels = _weight_layout_kernels(problem.generator, plan, scaled, weight_rows, samples, workspace)
        kernels = kernels.view(-1, *weight.shape)
        outputs.append(per_sample_conv(path, x[samples], kernels, *problem.geometry, problem.groups))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _backward_tap_major(grad_out, x, weight, scaled, plan, problem, grad_x, factor_grads, wants_weight):
    """The ``bmm`` path's backward: fills grad_x and factor_grads, returns grad_weight (or None)."""
    kind, geometry, groups = problem.generator, problem.geometry, problem.groups
    (out_channels, in_per_group, kh, kw), batch = weight.shape, x.shape[0]
    tap_weight = _tap_major(weight)
    grad_tap_weight = torch.zeros_like(tap_weight) if wants_weight else None
    stride, padding, dilation = geometry
    for start in range(0, batch, problem.chunk_size):
        samples = slice(start, min(start + problem.chunk_size, batch))
        gated, kernels = _kernels(kind, plan, scaled, tap_weight, samples, in_place=False)
        n = kernels.shape[0]
        columns = _tap_columns(x[samples], (kh, kw), geometry, groups)  # (n, T, g, C1/g, L)
        grad_block = grad_out[samples].view(n, 1, groups, out_channels // groups, -1)
        grad_kernels = torch.matmul(grad_block, columns.transpose(-1, -2)).view_as(kernels)
        if grad_x is not None:
            grouped_kernels = kernels.view(n, -1, groups, out_channels // groups, in_per_group)
            grad_columns = torch.matmul(grouped_kernels.transpose(-1, -2), grad_block)  # (n,T,g,C1/g,L)
            grad_columns = grad_columns.permute(0, 2, 3, 1, 4).reshape(n, -1, grad_columns.shape[-1])
            grad_x[samples] = F.fold(grad_columns, x.shape[2:], (kh, kw), dilation, padding, stride)
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
        logits_backward(kind, scaled, factor_grads, samples, grad_gated)
    if grad_tap_weight is None:
        return None
    return grad_tap_weight.view(kh, kw, out_channels, in_per_group).permute(2, 3, 0, 1)


def _backward_weight_layout(
    path, grad_out, x, weight, scaled, plan, problem, grad_x, factor_grads, wants_weight
):
    """The ``grouped`` and ``loop`` paths' backward, as ``_backward_tap_major``.

    Per chunk, after the convolution's backward gives G = dL/dK: one pass for G q, which serves
    dL/dW = sum_n G (weight_scale q + offset) and, in place, the sigmoid's dL/dz' = G w' q (1 - q);
    the last pass writes dL/dz' tap-major over q, for the generator's GEMMs.
    """
    kind, geometry, batch = problem.generator, problem.geometry, x.shape[0]
    weight_rows = _weight_rows(weight, plan)  # w' = weight_scale * w, (C2 * C1/g, T)
    grad_rows = torch.zeros_like(weight_rows) if wants_weight else None
    chunk = cache_chunk(weight, problem.chunk_size)
    workspace = _workspace(weight_rows, scaled, chunk)
    for start in range(0, batch, chunk):
        samples = slice(start, min(start + chunk, batch))
        gated, kernels = _weight_layout_kernels(kind, plan, scaled, weight_rows, samples, workspace)
        n, shared, q = gated.shape[0], gated.shape[1] == 1, gated.transpose(1, 2)
        chunk_grad_x, grad_kernels = per_sample_conv_backward(
            path, x[samples], kernels.view(n, *weight.shape), grad_out[samples], *geometry, problem.groups
        )
        if grad_x is not None:
            grad_x[samples] = chunk_grad_x
        grad_kernels = grad_kernels.reshape(kernels.shape)
        product = None
        if grad_rows is not None or (plan.sigmoid and not shared):
            product = torch.mul(grad_kernels, q, out=kernels)  # G q, into a free buffer
        if grad_rows is not None:
            grad_rows.add_(product.sum(dim=0), alpha=plan.weight_scale)
            if plan.offset:
                grad_rows += grad_kernels.sum(dim=0)
        if plan.sigmoid and not shared:  # G w' q (1 - q), written over q
            grad_logits = torch.mul(product.addcmul_(product, q, value=-1), weight_rows, out=q)
        elif not shared:  # no gate: dL/dz = G w
            grad_logits = torch.mul(grad_kernels, weight_rows, out=q)
        else:  # dL/dq on the small shared tensor, then through the gate
            grad_logits = grad_kernels.mul_(weight_rows).sum(dim=2, keepdim=True)
            if plan.sigmoid:
                grad_logits.mul_(q).mul_(q.neg().add_(1))
        tap_major = grad_logits.transpose(1, 2).view(n, -1, weight.shape[0], weight.shape[1])
        logits_backward(kind, scaled, factor_grads, samples, tap_major)
    return None if grad_rows is None else grad_rows.view(weight.shape)


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
    x, grad_out = x.contiguous(), grad_out.contiguous()
    plan = GATE_PLANS[problem.gate]
    scaled = scale_factors(problem.generator, factors, plan.logit_scale)
    grad_x = torch.empty_like(x) if needs[0] else None
    factor_grads = [torch.zeros_like(f) if need else None for f, need in zip(factors, needs[2:], strict=True)]
    arguments = (grad_out, x, weight, scaled, plan, problem, grad_x, factor_grads, needs[1])
    if path == "bmm":
        grad_weight = _backward_tap_major(*arguments)
    else:
        grad_weight = _backward_weight_layout(path, *arguments)
    for index in SCALED_FACTORS[problem.generator]:  # the chain rule through the logits' scale
        if factor_grads[index] is not None and plan.logit_scale != 1:
            factor_grads[index].mul_(plan.logit_scale)
    return [grad_x, grad_weight, *factor_grads]
