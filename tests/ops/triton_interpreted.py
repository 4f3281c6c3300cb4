"""The child-process side of tests/ops/test_triton_conv.py: impl="triton" in Triton's interpreter.

``TRITON_INTERPRET=1`` must be in the environment before ``triton`` is first imported: Triton
builds its own ``@triton.jit`` helpers (``tl.zeros``, ``tl.cdiv``, ``tl.sum``...) at import, and
only those built in interpreter mode run on CPU tensors. A pytest process may have imported
triton already (torch.compile does), and setting the variable there would change what other
tests run, so the checks run in a fresh ``spawn`` child: ``start`` (the pool's initializer) sets
the variable before anything imports triton, and every other function here runs in the child and
returns plain numbers (relative errors against float64 references) for the test to judge.

Only ``os`` and ``sys`` are imported at module level, so that unpickling ``start`` in the child
imports nothing else first.
"""

from __future__ import annotations

import os
import sys


def start() -> None:
    """Pool initializer: turn the interpreter on, then import the kernels (and triton) for the first time."""
    if "triton" in sys.modules:
        raise RuntimeError("triton was imported before TRITON_INTERPRET could be set in the child process")
    os.environ["TRITON_INTERPRET"] = "1"
    from awconv.ops import triton_conv

    if not triton_conv.INTERPRETED:
        raise RuntimeError("awconv.ops.triton_conv did not build interpreted kernels")


def _problem(generator, batch, in_channels, out_channels, kernel, size, groups, taps, dtype, rank):
    """Random x, weight and logit factors (``awconv.ops.fused``'s shapes), as leaves needing grads."""
    import torch

    in_per_group = in_channels // groups
    x = torch.randn(batch, in_channels, *size)
    weight = torch.randn(out_channels, in_per_group, *kernel)
    if generator == "full":
        factors = [
            torch.randn(batch, 3, taps),
            torch.randn(out_channels * in_per_group, 3) * 0.5,
            torch.randn(out_channels * in_per_group) * 0.5,
        ]
    else:
        factors = [torch.randn(batch, out_channels, rank, taps), torch.randn(batch, rank, in_per_group, taps)]
    return [t.to(dtype).requires_grad_(True) for t in (x, weight, *factors)]


def _case_problem(case: dict):
    """The case's dtype and its random problem (``_problem``), seeded by ``case["seed"]``."""
    import torch

    torch.manual_seed(case["seed"])
    dtype = getattr(torch, case["dtype"])
    leaves = _problem(
        case["generator"], case["batch"], case["in_channels"], case["out_channels"], case["kernel"],
        case["size"], case["groups"], case["taps"], dtype, case["rank"],
    )  # fmt: skip
    return dtype, leaves


def kernel_errors(case: dict) -> dict[str, object]:
    """``aw_conv2d_triton`` forward and gradients against float64 on one random problem.

    Args:
        case: generator, gate, kernel, stride, padding, dilation, groups, taps, size, batch,
            in_channels, out_channels, rank, dtype (a name), seed; ``needs``: which of
            (x, weight, *factors) require gradients (default all); ``target_programs``: the
            weight-gradient kernel's program target (1 puts every sample in one program).

    Returns:
        ``errors``: relative errors of the output and of each needed gradient; ``dtypes``: their
        dtype names; ``shape``: the output's.
    """
    import torch
    from reference import fused_reference, relative_error

    from awconv.ops import triton_conv
    from awconv.ops.triton_conv import aw_conv2d_triton

    triton_conv._TARGET_PROGRAMS = case.get("target_programs", 1024)
    dtype, leaves = _case_problem(case)
    needs = case.get("needs", [True] * len(leaves))
    for leaf, need in zip(leaves, needs, strict=True):
        leaf.requires_grad_(need)
    x, weight, *factors = leaves
    geometry = (case["stride"], case["padding"], case["dilation"], case["groups"])
    out = aw_conv2d_triton(x, weight, factors, case["generator"], case["gate"], *geometry)
    expected = fused_reference(case["generator"], case["gate"], x, weight, factors, *geometry)
    grad_out = torch.randn_like(expected)
    needed = [leaf for leaf in leaves if leaf.requires_grad]
    grads = torch.autograd.grad(out, needed, grad_out.to(dtype))
    expected_grads = torch.autograd.grad(expected, needed, grad_out)
    return {
        "errors": [relative_error(out, expected)]
        + [relative_error(g, e) for g, e in zip(grads, expected_grads, strict=True)],
        "dtypes": [str(t.dtype) for t in (out, *grads)],
        "shape": (tuple(out.shape), tuple(expected.shape)),
    }


def layer_errors(
    args: tuple, kwargs: dict, batch: int, size: tuple, channels_last: bool, seed: int
) -> list[float]:
    """``AWConv2d(*args, **kwargs, impl="triton")`` (generator off its init) against float64:
    the output, the input's gradient and each parameter's gradient."""
    import torch
    from reference import aw_layer_reference, randomize_generator, relative_error

    from awconv import AWConv2d

    torch.manual_seed(seed)
    layer = AWConv2d(*args, **kwargs, impl="triton")
    randomize_generator(layer)
    reference_layer = AWConv2d(*args, **kwargs).double()
    reference_layer.load_state_dict(layer.state_dict())
    x = torch.randn(batch, args[0], *size)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    out = layer(x)
    errors = [relative_error(out, aw_layer_reference(layer, x))]
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    reference_layer(x64).backward(grad_out.double())
    errors.append(relative_error(x.grad, x64.grad))
    for got, want in zip(layer.parameters(), reference_layer.parameters(), strict=True):
        errors.append(relative_error(got.grad, want.grad))
    return errors


def attention_sized_allocations(generator: str) -> int:
    """How many tensors of at least N x |K| elements (the modulated kernels' size) torch creates
    during one forward and backward of ``aw_conv2d_triton`` (N = 4, 16 -> 16 channels, 1x1, on
    2x2 pixels: every activation, and the head's weight, is smaller)."""
    import torch
    from allocations import LargeTensors

    from awconv.ops.triton_conv import aw_conv2d_triton

    torch.manual_seed(0)
    x, weight, *factors = _problem(generator, 4, 16, 16, (1, 1), (2, 2), 1, 1, torch.float32, 2)
    with LargeTensors(x.shape[0] * weight.numel()) as large:
        out = aw_conv2d_triton(x, weight, factors, generator, "tanh", (1, 1), (0, 0), (1, 1), 1)
        out.sum().backward()
    return large.count


def operator_error(case: dict) -> str:
    """The message ``aw_conv2d_fused(..., impl="triton", **case["kwargs"])`` raises, or ''."""
    import torch

    from awconv.ops import aw_conv2d_fused

    dtype = getattr(torch, case["dtype"])
    # a batch of 2, so that chunk_size=1 would split it
    x, weight, *factors = (t.detach() for t in _problem("lowrank", 2, 2, 2, (1, 1), (2, 2), 1, 1, dtype, 1))
    try:
        aw_conv2d_fused(x, weight, factors, generator="lowrank", impl="triton", **case["kwargs"])
    except (ValueError, TypeError) as error:
        return str(error)
    return ""


def backward_gradients(case: dict) -> dict[str, object]:
    """``triton_forward`` and ``triton_backward`` called directly, with ``case["needs"]``.

    Returns:
        ``missing``: for each of (x, weight, *factors), whether its gradient is None; ``errors``:
        relative errors of the output and of each gradient given, against float64; ``dtypes``:
        their dtype names; ``channels_last``: whether the output and grad_x are (grad_x False
        when missing).
    """
    import torch
    from reference import fused_reference, relative_error

    from awconv.ops.triton_conv import triton_backward, triton_forward

    dtype, leaves = _case_problem(case)
    x, weight, *factors = (leaf.detach() for leaf in leaves)
    geometry = (case["stride"], case["padding"], case["dilation"], case["groups"])
    config = (case["generator"], case["gate"], *geometry)
    out = triton_forward(x, weight, factors, *config)
    expected = fused_reference(case["generator"], case["gate"], *leaves[:2], leaves[2:], *geometry)
    grad_out = torch.randn_like(expected)
    grad_x, grad_weight, grad_factors = triton_backward(
        grad_out.to(dtype), x, weight, factors, *config, case["needs"]
    )
    grads = [grad_x, grad_weight, *grad_factors]
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    given = [(g, e) for g, e in zip(grads, expected_grads, strict=True) if g is not None]
    return {
        "missing": [g is None for g in grads],
        "errors": [relative_error(out, expected)] + [relative_error(g, e) for g, e in given],
        "dtypes": [str(t.dtype) for t in (out, *(g for g, _ in given))],
        "channels_last": [
            out.is_contiguous(memory_format=torch.channels_last),
            grad_x is not None and grad_x.is_contiguous(memory_format=torch.channels_last),
        ],
    }
