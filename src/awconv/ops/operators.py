"""AW-convolution as PyTorch operators: ``torch.ops.awconv.aw_conv2d`` and ``aw_conv2d_fused``.

Each is a ``torch.library.custom_op`` with

* a kernel that runs eagerly: chunk loops, paths chosen by shape and batch size live in it, out of
  sight of the tracers (``aw_conv2d_fused`` looks its ``impl`` up in ``awconv.ops.kernels``);
* a fake kernel that gives the output's shape, dtype and layout from the inputs' alone, so
  torch.compile and torch.export trace one node with a symbolic batch;
* a backward that is itself an operator (``*_backward``, with its own fake kernel), so AOTAutograd
  traces the backward as one node too; under ``create_graph=True`` (double backward) the
  gradients come from the composite form of ``awconv.ops.composite`` instead, which can be
  differentiated again.

The operators take normalised arguments: 4-D input, symmetric zero padding, every floating tensor
in one dtype; ``awconv.ops.aw_conv2d`` and ``awconv.ops.fused`` validate and normalise, and
callers use those. Outputs follow the input's memory format (channels_last in, channels_last out);
an empty batch gives an empty output and zero gradients for the parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from awconv.ops.composite import composite_aw_conv2d, composite_aw_conv2d_fused, composite_vjp
from awconv.ops.geometry import Geometry, output_memory_format, output_shape
from awconv.ops.kernels import FUSED_KERNELS, FusedProblem, choose_fused_kernel
from awconv.ops.paths import choose_impl, modulated_conv, modulated_conv_backward
from awconv.ops.precision import autocast_off

__all__ = ["aw_conv2d_fused_op", "aw_conv2d_op"]


def _geometry(stride: list[int], padding: list[int], dilation: list[int]) -> Geometry:
    return (stride[0], stride[1]), (padding[0], padding[1]), (dilation[0], dilation[1])


def _empty_output(x: Tensor, weight: Tensor, geometry: Geometry) -> Tensor:
    shape = output_shape(x, weight.shape, geometry)
    return x.new_empty(shape).contiguous(memory_format=output_memory_format(x))


def _gradient_slots(x: Tensor, others: list[Tensor], mask: list[bool]) -> list[Tensor]:
    """Uninitialised gradients in the promised layouts; a 0-element tensor where not wanted."""
    layouts = [output_memory_format(x)] + [torch.contiguous_format] * len(others)
    return [
        torch.empty(t.shape, dtype=t.dtype, device=t.device, memory_format=layout) if need else t.new_empty(0)
        for t, layout, need in zip([x, *others], layouts, mask, strict=True)
    ]


def _settle_gradients(x: Tensor, others: list[Tensor], mask: list[bool], grads: list) -> list[Tensor]:
    """The kernel's gradients in the layouts ``_gradient_slots`` promises; zeros where it gave None."""
    settled = []
    for index, (tensor, need, grad) in enumerate(zip([x, *others], mask, grads, strict=True)):
        if not need:
            settled.append(tensor.new_empty(0))
            continue
        if grad is None:
            grad = torch.zeros_like(tensor)
        layout = output_memory_format(x) if index == 0 else torch.contiguous_format
        settled.append(grad.contiguous(memory_format=layout))
    return settled


# --- attention given -------------------------------------------------------------------------


@torch.library.custom_op("awconv::aw_conv2d", mutates_args=())
def aw_conv2d_op(
    input: Tensor,
    weight: Tensor,
    attention: Tensor,
    residual: bool,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    impl: str,
) -> Tensor:
    """``conv2d(input[n], (1 + attention[n]) * weight)``; shapes as ``awconv.ops.aw_conv2d``."""
    geometry = _geometry(stride, padding, dilation)
    if input.shape[0] == 0:
        return _empty_output(input, weight, geometry)
    if impl == "auto":
        out_shape = output_shape(input, weight.shape, geometry)
        impl = choose_impl(input.shape[0], out_shape[2] * out_shape[3])
    with autocast_off(input.device.type):
        out = modulated_conv(impl, input, weight, attention, residual, geometry, groups)
    return out.contiguous(memory_format=output_memory_format(input))


@aw_conv2d_op.register_fake
def _aw_conv2d_fake(input, weight, attention, residual, stride, padding, dilation, groups, impl):
    return _empty_output(input, weight, _geometry(stride, padding, dilation))


@torch.library.custom_op("awconv::aw_conv2d_backward", mutates_args=())
def aw_conv2d_backward_op(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    attention: Tensor,
    residual: bool,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    impl: str,
    output_mask: list[bool],
) -> list[Tensor]:
    """[grad_input, grad_weight, grad_attention]; a 0-element tensor where ``output_mask`` is False."""
    geometry, others = _geometry(stride, padding, dilation), [weight, attention]
    if input.shape[0] == 0:
        return _settle_gradients(input, others, output_mask, [None] * 3)
    if impl == "auto":
        impl = choose_impl(input.shape[0], grad_output.shape[2] * grad_output.shape[3])
    with autocast_off(input.device.type):
        grads = modulated_conv_backward(
            impl, grad_output, input, weight, attention, residual, geometry, groups, output_mask
        )
    return _settle_gradients(input, others, output_mask, grads)


@aw_conv2d_backward_op.register_fake
def _aw_conv2d_backward_fake(grad_output, input, weight, attention, *config_and_mask):
    return _gradient_slots(input, [weight, attention], config_and_mask[-1])


def _aw_conv2d_setup_context(ctx, inputs, output) -> None:
    input, weight, attention, *config = inputs
    ctx.save_for_backward(input, weight, attention)
    ctx.config = config


def _aw_conv2d_backward(ctx, grad_output):
    tensors, config = ctx.saved_tensors, ctx.config
    needs = list(ctx.needs_input_grad[:3])
    if torch.is_grad_enabled():  # create_graph=True: gradients that can be differentiated again
        residual, stride, padding, dilation, groups, _ = config
        geometry = _geometry(stride, padding, dilation)

        def composite(input, weight, attention):
            return composite_aw_conv2d(input, weight, attention, residual, geometry, groups)

        grads = composite_vjp(composite, tensors, needs, grad_output)
    else:
        grads = torch.ops.awconv.aw_conv2d_backward(grad_output, *tensors, *config, needs)
        grads = [grad if need else None for grad, need in zip(grads, needs, strict=True)]
    return (*grads, *([None] * len(config)))


aw_conv2d_op.register_autograd(_aw_conv2d_backward, setup_context=_aw_conv2d_setup_context)


# --- attention made inside from its logit factors ---------------------------------------------


def _fused_problem(
    input: Tensor, generator, gate, stride, padding, dilation, groups, chunk_size
) -> FusedProblem:
    batch = input.shape[0]
    chunk = min(chunk_size, batch) if chunk_size > 0 else batch
    return FusedProblem(generator, gate, _geometry(stride, padding, dilation), groups, chunk)


def _fused_kernel(impl: str, input: Tensor, weight: Tensor, problem: FusedProblem):
    """The registered kernel ``impl`` names, ``auto`` resolved the same way in forward and backward."""
    device_type = input.device.type
    if impl == "auto":
        out_shape = output_shape(input, weight.shape, problem.geometry)
        impl = choose_fused_kernel(
            device_type, problem.chunk_size, out_shape[2] * out_shape[3], weight.numel()
        )
    kernel = FUSED_KERNELS[impl]
    if kernel.device_types is not None and device_type not in kernel.device_types:
        raise ValueError(f"impl={impl!r} runs on {', '.join(kernel.device_types)} tensors, got {device_type}")
    return kernel


@torch.library.custom_op("awconv::aw_conv2d_fused", mutates_args=())
def aw_conv2d_fused_op(
    input: Tensor,
    weight: Tensor,
    factor_a: Tensor,
    factor_b: Tensor,
    factor_c: Tensor | None,
    generator: str,
    gate: str,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    impl: str,
    chunk_size: int,
) -> Tensor:
    """AW-convolution with the attention made from its logit factors; shapes as ``awconv.ops.fused``.

    The factors are ``(hidden, head_weight, head_bias)`` for ``"full"`` and ``(factor_out,
    factor_in, None)`` for ``"lowrank"``: three arguments rather than a list, which would cost a
    tree flattening on every call. ``chunk_size`` 0 means the whole batch.
    """
    factors = _factors(factor_a, factor_b, factor_c)
    problem = _fused_problem(input, generator, gate, stride, padding, dilation, groups, chunk_size)
    if input.shape[0] == 0:
        return _empty_output(input, weight, problem.geometry)
    kernel = _fused_kernel(impl, input, weight, problem)
    with autocast_off(input.device.type):
        out = kernel.forward(input, weight, factors, problem)
    return out.contiguous(memory_format=output_memory_format(input))


def _factors(factor_a: Tensor, factor_b: Tensor, factor_c: Tensor | None) -> list[Tensor]:
    return [factor_a, factor_b] if factor_c is None else [factor_a, factor_b, factor_c]


@aw_conv2d_fused_op.register_fake
def _aw_conv2d_fused_fake(
    input, weight, factor_a, factor_b, factor_c, generator, gate, stride, padding, *rest
):
    dilation = rest[0]
    return _empty_output(input, weight, _geometry(stride, padding, dilation))


@torch.library.custom_op("awconv::aw_conv2d_fused_backward", mutates_args=())
def aw_conv2d_fused_backward_op(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    factor_a: Tensor,
    factor_b: Tensor,
    factor_c: Tensor | None,
    generator: str,
    gate: str,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    impl: str,
    chunk_size: int,
    output_mask: list[bool],
) -> list[Tensor]:
    """[grad_input, grad_weight, *grad_factors]; a 0-element tensor where ``output_mask`` is False."""
    factors = _factors(factor_a, factor_b, factor_c)
    problem = _fused_problem(input, generator, gate, stride, padding, dilation, groups, chunk_size)
    others = [weight, *factors]
    if input.shape[0] == 0:
        return _settle_gradients(input, others, output_mask, [None] * len(output_mask))
    kernel = _fused_kernel(impl, input, weight, problem)
    with autocast_off(input.device.type):
        grads = kernel.backward(grad_output, input, weight, factors, problem, output_mask)
    return _settle_gradients(input, others, output_mask, grads)


@aw_conv2d_fused_backward_op.register_fake
def _aw_conv2d_fused_backward_fake(
    grad_output, input, weight, factor_a, factor_b, factor_c, *config_and_mask
):
    return _gradient_slots(input, [weight, *_factors(factor_a, factor_b, factor_c)], config_and_mask[-1])


def _fused_setup_context(ctx, inputs, output) -> None:
    input, weight, factor_a, factor_b, factor_c, *config = inputs
    ctx.save_for_backward(input, weight, *_factors(factor_a, factor_b, factor_c))
    ctx.config = config


def _fused_backward(ctx, grad_output):
    tensors, config = ctx.saved_tensors, ctx.config
    needs = list(ctx.needs_input_grad[: len(tensors)])
    if torch.is_grad_enabled():  # create_graph=True: gradients that can be differentiated again
        generator, gate, stride, padding, dilation, groups, *_ = config
        geometry = _geometry(stride, padding, dilation)

        def composite(input, weight, *factors):
            return composite_aw_conv2d_fused(input, weight, factors, generator, gate, geometry, groups)

        grads = composite_vjp(composite, tensors, needs, grad_output)
    else:
        factor_c = tensors[4] if len(tensors) == 5 else None
        grads = torch.ops.awconv.aw_conv2d_fused_backward(grad_output, *tensors[:4], factor_c, *config, needs)
        grads = [grad if need else None for grad, need in zip(grads, needs, strict=True)]
    grads += [None] * (5 - len(grads))  # factor_c of "lowrank"
    return (*grads, *([None] * len(config)))


aw_conv2d_fused_op.register_autograd(_fused_backward, setup_context=_fused_setup_context)
