"""``impl="triton"`` in the fused operator's kernel table, with triton imported on first use.

Registering costs nothing: ``awconv.ops.triton_conv`` (and the ``triton`` package) is imported the
first time a ``"triton"`` kernel runs, so ``import awconv`` and the command line stay fast and
work where triton is not installed. The kernels run on CUDA tensors, or on CPU tensors in Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests check
them; ``awconv.ops.triton_conv`` refuses other tensors in one line. They never store the
modulated kernels, so the operator's ``chunk_size`` does not apply to them and is refused.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from torch import Tensor

from awconv.ops.kernels import FusedProblem, register_fused_kernel

__all__: list[str] = []


def _triton_conv() -> ModuleType:
    try:
        return importlib.import_module("awconv.ops.triton_conv")
    except ModuleNotFoundError as error:
        if error.name != "triton":
            raise
        raise ImportError("impl='triton' needs the triton package (pip install triton)") from error


def _check_whole_batch(x: Tensor, problem: FusedProblem) -> None:
    if problem.chunk_size < x.shape[0]:
        raise ValueError(
            "chunk_size applies to the CPU paths, not impl='triton' (which stores no modulated "
            f"kernels), got chunk_size={problem.chunk_size} for a batch of {x.shape[0]}"
        )


def _forward(x: Tensor, weight: Tensor, factors: Sequence[Tensor], problem: FusedProblem) -> Tensor:
    """(N, C1, H, W) -> (N, C2, H_out, W_out) channels_last; the kernel contract of awconv.ops.kernels."""
    _check_whole_batch(x, problem)
    return _triton_conv().triton_forward(
        x, weight, factors, problem.generator, problem.gate, *problem.geometry, problem.groups
    )


def _backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    problem: FusedProblem,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """[grad_x, grad_weight, *grad_factors], None where ``needs`` is False."""
    _check_whole_batch(x, problem)
    grad_x, grad_weight, grad_factors = _triton_conv().triton_backward(
        grad_out,
        x,
        weight,
        factors,
        problem.generator,
        problem.gate,
        *problem.geometry,
        problem.groups,
        needs,
    )
    return [grad_x, grad_weight, *grad_factors]


register_fused_kernel("triton", _forward, _backward)
