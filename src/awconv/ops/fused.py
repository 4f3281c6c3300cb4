"""Fused AW-convolution: the generator's last layer, the gate, the modulation and the convolution.

The ``full`` attention has N * C2 * C1/g * kh * kw values, in deep layers far more than the
convolution's input and output together, so producing, storing and re-reading it dominates the
cost on a CPU. ``aw_conv2d_fused`` takes the small tensors the attention is made from (its
*logit factors*) instead of the attention, and runs the operator ``torch.ops.awconv.aw_conv2d_fused``
(``awconv.ops.operators``), whose kernels (``awconv.ops.kernels``) never store the attention.

Logit factors per generator, with P = kh * kw (one value per tap) or P = 1 (shared by the taps):

* ``"full"``: ``(hidden (N, d, P), head_weight (C2 * C1/g, d), head_bias (C2 * C1/g,))``, and
  ``logits[n, :, p] = head_weight @ hidden[n, :, p] + head_bias``.
* ``"lowrank"``: ``(factor_out (N, C2, R, P), factor_in (N, R, C1/g, P))``, and
  ``logits[n, :, :, p] = factor_out[n, :, :, p] @ factor_in[n, :, :, p]``.

Then ``attention = gate(logits)`` and ``output[n] = conv2d(input[n], (1 + attention[n]) * weight)``.

``aw_conv2d_fused`` is a leaf for ``torch.fx.symbolic_trace`` (it handles ``__torch_function__``,
as ``torch.nn.functional`` does), so a traced graph calls it with its checks. Under ONNX export,
TorchScript tracing and ``torch.func`` transforms it runs the composite form of
``awconv.ops.composite`` instead of the operator.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function

from awconv.ops.composite import composite_aw_conv2d_fused, wants_composite
from awconv.ops.geometry import IntOrPair, prepare_geometry
from awconv.ops.kernels import fused_impls
from awconv.ops.operators import aw_conv2d_fused_op
from awconv.ops.precision import to_compute_dtype
from awconv.ops.validation import check_conv_shapes, check_tensors

__all__ = ["FUSED_GATES", "FUSED_GENERATORS", "aw_conv2d_fused"]

FUSED_GENERATORS = ("full", "lowrank")
FUSED_GATES = ("tanh", "sigmoid", "none")
_FACTOR_NAMES = {"full": ("hidden", "head_weight", "head_bias"), "lowrank": ("factor_out", "factor_in")}


def _check_factors(kind: str, factors: Sequence[Tensor], x: Tensor, weight: Tensor) -> None:
    batch, (c2, c1g, kh, kw) = x.shape[0], weight.shape
    names = _FACTOR_NAMES[kind]
    check_tensors(**dict(zip(names, factors, strict=True)))
    taps = factors[0].shape[-1] if factors[0].dim() >= 3 else None
    if taps not in (1, kh * kw):
        raise ValueError(
            f"{names[0]} must end in P = 1 or P = kh*kw = {kh * kw} taps, got shape {tuple(factors[0].shape)}"
        )
    if kind == "full":
        d = factors[0].shape[1]
        expected = {"hidden": (batch, d, taps), "head_weight": (c2 * c1g, d), "head_bias": (c2 * c1g,)}
    else:
        if factors[0].dim() != 4:
            raise ValueError(
                f"factor_out must have shape (N, C2, R, P) = ({batch}, {c2}, R, {taps}), "
                f"got {tuple(factors[0].shape)}"
            )
        rank = factors[0].shape[2]
        expected = {"factor_out": (batch, c2, rank, taps), "factor_in": (batch, rank, c1g, taps)}
    for name, factor in zip(names, factors, strict=True):
        if tuple(factor.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(factor.shape)}")


def aw_conv2d_fused(
    input: Tensor,
    weight: Tensor,
    factors: Sequence[Tensor],
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    generator: str = "full",
    gate: str = "tanh",
    impl: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """AW-convolution with the attention generated inside from its logit factors.

    Equal to ``aw_conv2d(input, weight, gate(logits).expand(N, C2, C1/g, kh, kw), bias, ...)``
    with the logits of the module docstring, but the attention is never stored.

    Args:
        input: (N, C1, H, W).
        weight: (C2, C1/groups, kh, kw).
        factors: ``(hidden, head_weight, head_bias)`` for ``generator="full"``, ``(factor_out,
            factor_in)`` for ``"lowrank"``; shapes in the module docstring.
        bias: (C2,) or None.
        stride: int or (sh, sw).
        padding: int, (ph, pw), ``"same"`` or ``"valid"`` (zero padding).
        dilation: int or (dh, dw).
        groups: blocked connections from input to output channels.
        generator: ``"full"`` or ``"lowrank"``.
        gate: ``"tanh"``, ``"sigmoid"`` or ``"none"``.
        chunk_size: samples whose attention exists at once; None is the whole batch. Smaller
            chunks bound the memory but re-read the generator's head once per chunk, which for
            ``"full"`` holds about 3.6x as many values as the weight (d=32, 3x3), so they are slower.
        impl: ``"auto"`` or a kernel of ``awconv.ops.kernels``: the ATen paths ``"grouped"``,
            ``"bmm"`` (works on the tap-major kernels directly) and ``"loop"``, as in ``aw_conv2d``;
            ``"cpp"``, the compiled CPU kernel; ``"triton"`` on CUDA.

    Returns:
        (N, C2, H_out, W_out), in input's memory format.
    """
    if generator not in FUSED_GENERATORS:
        raise ValueError(f"generator must be one of {FUSED_GENERATORS}, got {generator!r}")
    names = _FACTOR_NAMES[generator]
    if not isinstance(factors, Sequence) or len(factors) != len(names):
        raise ValueError(f"factors must be a sequence ({', '.join(names)}) for generator={generator!r}")
    tensors = tuple(t for t in (input, weight, *factors, bias) if t is not None)
    if has_torch_function(tensors):  # torch.fx.Proxy and other __torch_function__ types
        return handle_torch_function(
            aw_conv2d_fused, tensors, input, weight, factors, bias, stride, padding, dilation, groups,
            generator=generator, gate=gate, impl=impl, chunk_size=chunk_size,
        )  # fmt: skip
    if gate not in FUSED_GATES:
        raise ValueError(f"gate must be one of {FUSED_GATES}, got {gate!r}")
    if impl not in fused_impls():
        raise ValueError(f"impl must be one of {fused_impls()}, got {impl!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    check_tensors(input=input, weight=weight, bias=bias)
    check_conv_shapes(input, weight, bias, groups)
    _check_factors(generator, factors, input, weight)
    input, geometry = prepare_geometry(input, weight.shape[2:], stride, padding, dilation)
    input, weight, *factors = to_compute_dtype(input, weight, *factors)
    if wants_composite():
        out = composite_aw_conv2d_fused(input, weight, factors, generator, gate, geometry, groups)
    else:
        factor_c = factors[2] if generator == "full" else None
        out = aw_conv2d_fused_op(
            input, weight, factors[0], factors[1], factor_c, generator, gate, *geometry, groups, impl,
            chunk_size or 0,
        )  # fmt: skip
    if bias is not None:
        out = out + (bias if bias.dtype == out.dtype else bias.to(out.dtype)).view(1, -1, 1, 1)
    return out
