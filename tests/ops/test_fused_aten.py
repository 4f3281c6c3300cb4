"""The fused operator's ATen kernels called directly: the gradients asked for and only those, the path
each takes, its chunks, and the attention-sized buffers it allocates (reused, not made per chunk)."""

from __future__ import annotations

import itertools

import pytest
import torch
from allocations import LargeTensors
from reference import fused_reference, logit_factors, relative_error
from strategies import one_or_all_but_one

from awconv.ops import fused_aten
from awconv.ops.kernels import FusedProblem
from awconv.ops.paths import PATHS

# An ``out=`` buffer of the wrong size is resized with a warning (and the reuse lost): an error here.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

GEOMETRY = ((1, 1), (1, 1), (1, 1))


def _factors(generator: str, batch: int, c2: int, c1g: int, taps: int, seed: int) -> list[torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return logit_factors(generator, batch, c2, c1g, taps, rng, rank=2, scale=0.5)


CASES = [
    (path, generator, gate, taps, mask)
    for path, generator in itertools.product(PATHS, ("full", "lowrank"))
    for gate, taps in (("tanh", 6), ("sigmoid", 1), ("none", 6), ("sigmoid", 6))
    for mask in one_or_all_but_one(5 if generator == "full" else 4)
]


@pytest.mark.parametrize(("path", "generator", "gate", "taps", "needs"), CASES)
def test_backward_gives_exactly_the_gradients_asked_for(path, generator, gate, taps, needs) -> None:
    rng = torch.Generator().manual_seed(len(path) + taps)
    x, weight = torch.randn(5, 4, 5, 6, generator=rng), torch.randn(6, 2, 3, 2, generator=rng)
    factors = _factors(generator, 5, 6, 2, taps, seed=sum(needs))
    problem = FusedProblem(generator, gate, GEOMETRY, groups=2, chunk_size=2)
    grad_out = torch.randn(5, 6, 5, 7, generator=rng)
    grads = fused_aten.fused_backward(path, grad_out, x, weight, factors, problem, needs)

    leaves = [t.double().requires_grad_() for t in (x, weight, *factors)]
    expected = fused_reference(generator, gate, leaves[0], leaves[1], leaves[2:], *GEOMETRY, 2)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out.double())
    assert len(grads) == len(leaves)
    for index, (grad, reference, need) in enumerate(zip(grads, expected_grads, needs, strict=True)):
        if not need:
            assert grad is None, f"gradient {index} was not asked for"
            continue
        assert relative_error(grad, reference) < 1e-5, f"gradient {index}"


def test_chunks_hold_the_cache_budget_of_kernels_and_at_least_min_chunk_samples() -> None:
    weight = torch.empty(64, 64, 3, 3)  # 147,456 bytes of kernels per sample
    assert fused_aten.cache_chunk(weight, 128) == fused_aten.CACHE_CHUNK_BYTES // 147_456 == 14
    assert fused_aten.cache_chunk(weight, 5) == 5
    assert fused_aten.cache_chunk(weight.double(), 128) == fused_aten.MIN_CHUNK
    assert fused_aten.cache_chunk(torch.empty(8, 8, 3, 3), 1000) == fused_aten.CACHE_CHUNK_BYTES // 2304


class _Calls:
    """Wraps functions of fused_aten so that each call records (name, samples in its batch)."""

    def __init__(self, monkeypatch, names: list[str]) -> None:
        self.calls: list[tuple[str, int]] = []
        for name in names:
            original = getattr(fused_aten, name)
            monkeypatch.setattr(fused_aten, name, self._recording(name, original))

    def _recording(self, name, original):
        def call(*args, **kwargs):
            tensor = next(a for a in args if isinstance(a, torch.Tensor))
            samples = next((a for a in args if isinstance(a, slice)), None)
            size = tensor.shape[0] if samples is None else len(range(*samples.indices(tensor.shape[0])))
            self.calls.append((name, size))
            return original(*args, **kwargs)

        return call


def _problem_64(batch: int = 32):
    rng = torch.Generator().manual_seed(0)
    x, weight = torch.randn(batch, 64, 4, 4, generator=rng), torch.randn(64, 64, 3, 3, generator=rng) * 0.05
    factors = _factors("full", batch, 64, 64, 9, seed=1)
    return x, weight, factors, FusedProblem("full", "tanh", GEOMETRY, groups=1, chunk_size=batch)


@pytest.mark.parametrize("path", ["grouped", "loop"])
def test_weight_layout_paths_convolve_in_cache_sized_chunks(monkeypatch, path) -> None:
    x, weight, factors, problem = _problem_64()
    spy = _Calls(
        monkeypatch, ["per_sample_conv", "per_sample_conv_backward", "_forward_tap_major", "_workspace"]
    )
    out = fused_aten.fused_forward(path, x, weight, factors, problem)
    fused_aten.fused_backward(path, torch.ones_like(out), x, weight, factors, problem, [True] * 5)
    chunks = [("per_sample_conv", 14), ("per_sample_conv", 14), ("per_sample_conv", 4)]
    backward = [(name + "_backward", size) for name, size in chunks]
    assert spy.calls == [("_workspace", 64 * 64), *chunks, ("_workspace", 64 * 64), *backward]


def test_bmm_path_works_tap_major_in_the_problems_chunks(monkeypatch) -> None:
    x, weight, factors, _ = _problem_64()
    problem = FusedProblem("full", "tanh", GEOMETRY, groups=1, chunk_size=20)
    spy = _Calls(
        monkeypatch, ["per_sample_conv", "per_sample_conv_backward", "_forward_tap_major", "_workspace"]
    )
    out = fused_aten.fused_forward("bmm", x, weight, factors, problem)
    assert spy.calls == [("_forward_tap_major", 20), ("_forward_tap_major", 12)]
    spy = _Calls(monkeypatch, ["_backward_tap_major", "_backward_weight_layout"])
    fused_aten.fused_backward("bmm", torch.ones_like(out), x, weight, factors, problem, [True] * 5)
    assert spy.calls == [("_backward_tap_major", 32)]


def _count_allocations(function, min_bytes: int) -> int:
    with LargeTensors(min_bytes // 4) as large:  # float32
        function()
    return large.count


@pytest.mark.parametrize("gate", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("path", ["grouped", "loop"])
def test_weight_layout_paths_reuse_two_buffers_for_every_chunk(path, gate) -> None:
    """Forward makes its chunk-sized tensors in the workspace's two buffers; backward adds only the
    convolution's gradient of each chunk's kernels. Three chunks here (14, 14, 4 samples)."""
    x, weight, factors, _ = _problem_64()
    problem = FusedProblem("full", gate, GEOMETRY, groups=1, chunk_size=32)
    chunk_bytes = 4 * 64 * 64 * 9 * 4  # kernels of 4 samples: less than any chunk's, more than the rest
    out = fused_aten.fused_forward(path, x, weight, factors, problem)
    assert (
        _count_allocations(lambda: fused_aten.fused_forward(path, x, weight, factors, problem), chunk_bytes)
        == 2
    )

    def backward():
        fused_aten.fused_backward(path, torch.ones_like(out), x, weight, factors, problem, [True] * 5)

    assert _count_allocations(backward, chunk_bytes) == 2 + 3
    expected = fused_reference("full", gate, x, weight, factors, *GEOMETRY, 1)
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("gate", ["tanh", "sigmoid"])  # W * 2q, and W (1 + q)
def test_bmm_path_makes_each_chunks_kernels_in_place_of_its_logits(gate) -> None:
    """Forward: one tensor per chunk (the logits, gated and modulated in place); backward: three
    (the logits, the kernels, their gradient, which also takes dL/dW's product)."""
    x, weight, factors, _ = _problem_64()
    problem = FusedProblem("full", gate, GEOMETRY, groups=1, chunk_size=16)
    chunk_bytes = 16 * 64 * 64 * 9 * 4
    out = fused_aten.fused_forward("bmm", x, weight, factors, problem)
    assert (
        _count_allocations(lambda: fused_aten.fused_forward("bmm", x, weight, factors, problem), chunk_bytes)
        == 2
    )

    def backward():
        fused_aten.fused_backward("bmm", torch.ones_like(out), x, weight, factors, problem, [True] * 5)

    assert _count_allocations(backward, chunk_bytes) == 2 * 3
