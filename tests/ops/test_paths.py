"""The per-sample paths' backward, called directly: the gradients asked for, and only those."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference import aw_conv2d_reference, relative_error

from awconv.ops import paths

GEOMETRY = ((2, 1), (1, 0), (1, 2))  # stride, padding, dilation
GROUPS = 2
MASKS = [mask for mask in itertools.product([True, False], repeat=3) if any(mask)]


def _problem(seed: int):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 7, 8, generator=generator)
    weight = torch.randn(6, 2, 3, 2, generator=generator)
    attention = torch.randn(3, 6, 2, 3, 2, generator=generator)
    out_shape = aw_conv2d_reference(x, weight, attention, None, *GEOMETRY, GROUPS).shape
    grad_out = torch.randn(out_shape, generator=generator)
    return x, weight, attention, grad_out


def _reference_gradients(x, weight, attention, grad_out, residual: bool) -> list[torch.Tensor]:
    leaves = [t.double().requires_grad_() for t in (x, weight, attention)]
    out = aw_conv2d_reference(*leaves[:2], leaves[2], None, *GEOMETRY, GROUPS, residual)
    return list(torch.autograd.grad(out, leaves, grad_out.double()))


@pytest.mark.parametrize("impl", paths.PATHS)
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize(
    "needs", MASKS, ids=lambda mask: "".join("xwa"[i] if m else "-" for i, m in enumerate(mask))
)
def test_backward_gives_exactly_the_gradients_asked_for(impl, residual, needs):
    x, weight, attention, grad_out = _problem(seed=len(impl) + 2 * residual + 4 * sum(needs))
    grads = paths.modulated_conv_backward(
        impl, grad_out, x, weight, attention, residual, GEOMETRY, GROUPS, needs
    )
    expected = _reference_gradients(x, weight, attention, grad_out, residual)
    assert len(grads) == 3
    for name, grad, reference, need in zip(("x", "weight", "attention"), grads, expected, needs, strict=True):
        if not need:
            assert grad is None, f"{name}: not asked for, got {type(grad).__name__}"
            continue
        assert grad.shape == reference.shape, name
        assert relative_error(grad, reference) < 1e-5, name


@pytest.mark.parametrize("impl", paths.PATHS)
def test_forward_matches_the_reference(impl):
    x, weight, attention, _ = _problem(seed=11)
    for residual in (True, False):
        out = paths.modulated_conv(impl, x, weight, attention, residual, GEOMETRY, GROUPS)
        expected = aw_conv2d_reference(x, weight, attention, None, *GEOMETRY, GROUPS, residual)
        assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize(
    ("impl", "backward"),
    [("bmm", "_bmm_backward"), ("grouped", "_conv_backward"), ("loop", "_conv_backward")],
)
def test_each_path_takes_its_own_backward(monkeypatch, impl, backward):
    """The bmm path's backward is its own unfold + matmul, the others one convolution backward."""
    calls = []
    original = getattr(paths, backward)

    def spy(*args):
        calls.append(backward)
        return original(*args)

    monkeypatch.setattr(paths, backward, spy)
    x, weight, attention, grad_out = _problem(seed=5)
    kernels = weight * (1 + attention)
    paths.per_sample_conv_backward(impl, x, kernels, grad_out, *GEOMETRY, GROUPS)
    paths.modulated_conv_backward(impl, grad_out, x, weight, attention, True, GEOMETRY, GROUPS, [True] * 3)
    assert calls == [backward, backward]
