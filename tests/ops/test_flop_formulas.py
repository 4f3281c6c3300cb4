"""The operators' FLOP counts against torch's own counts of a plain convolution and a matmul."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from awconv.ops import aw_conv2d, aw_conv2d_fused


def _counted(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def _factors(generator: str, n: int, c2: int, c1g: int, positions: int, requires_grad: bool):
    shapes = {
        "full": [(n, 5, positions), (c2 * c1g, 5), (c2 * c1g,)],
        "lowrank": [(n, c2, 2, positions), (n, 2, c1g, positions)],
    }[generator]
    return [torch.randn(shape, requires_grad=requires_grad) for shape in shapes]


def _torch_generator_product(generator: str, factors) -> torch.Tensor:
    """The logits' product as torch counts it: (N, C2*C1/g, P) or (N, C2, C1/g, P)."""
    if generator == "full":
        return torch.matmul(factors[1], factors[0])
    return torch.einsum("nrop,nrip->noip", factors[0].transpose(1, 2), factors[1])


@pytest.mark.parametrize("generator", ["full", "lowrank"])
@pytest.mark.parametrize(("groups", "stride", "positions"), [(1, 1, 9), (2, 2, 1)])
def test_fused_forward_and_backward_count_the_conv_and_the_generator_product(
    generator: str, groups: int, stride: int, positions: int
) -> None:
    n, c1, c2, size = 3, 4, 6, 7
    x = torch.randn(n, c1, size, size, requires_grad=True)
    weight = torch.randn(c2, c1 // groups, 3, 3, requires_grad=True)
    factors = _factors(generator, n, c2, c1 // groups, positions, requires_grad=True)

    def fused() -> None:
        out = aw_conv2d_fused(x, weight, factors, None, stride, 1, 1, groups, generator=generator)
        out.sum().backward()

    def plain() -> None:  # the same convolution for every sample, and the factors' product
        F.conv2d(x, weight, None, stride, 1, 1, groups).sum().backward()
        _torch_generator_product(generator, factors).sum().backward()

    assert _counted(fused) == _counted(plain) > 0


def test_attention_given_counts_a_convolution_forward_and_backward() -> None:
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    weight = torch.randn(8, 4, 3, 3, requires_grad=True)
    attention = torch.randn(2, 8, 4, 3, 3, requires_grad=True)
    forward_only = _counted(lambda: aw_conv2d(x.detach(), weight.detach(), attention.detach(), padding=1))
    assert forward_only == _counted(lambda: F.conv2d(x.detach(), weight.detach(), padding=1))
    both = _counted(lambda: aw_conv2d(x, weight, attention, padding=1).sum().backward())
    assert both == _counted(lambda: F.conv2d(x, weight, padding=1).sum().backward())


@pytest.mark.parametrize("wants", ["input", "weights"])
def test_backward_counts_only_the_gradients_asked_for(wants: str) -> None:
    """The forward and one gradient (torch counts each as one convolution), not two gradients or none."""
    x = torch.randn(2, 4, 7, 7, requires_grad=wants == "input")
    weight = torch.randn(8, 4, 3, 3, requires_grad=wants == "weights")
    attention = torch.randn(2, 8, 4, 3, 3, requires_grad=wants == "weights")
    counted = _counted(lambda: aw_conv2d(x, weight, attention, stride=2, padding=1).sum().backward())
    assert counted == _counted(lambda: F.conv2d(x, weight, stride=2, padding=1).sum().backward())
    assert counted == 2 * _counted(lambda: F.conv2d(x.detach(), weight.detach(), stride=2, padding=1)) > 0
