"""ResNet-20's AW layers and training step beside their plain counterparts, on the CPU.

Usage: ``python benchmarks/bench_cifar.py [--batch-sizes 128 8] [--repeats 5] [--threads 1]
[--impls auto]`` prints the tables (issue 15's targets: every layer <= 1.5x plain at batch 128 and
<= 2x at batch 8, the training step <= 1.5x).

* **Layers**: every 3x3 convolution shape of ResNet-20's blocks (16@32, 32@16, 64@8 and the two
  strided ones, 16->32 at 32 px and 32->64 at 16 px), forward + backward (the gradients of the input
  and every parameter against a fixed random output gradient): an ``AWConv2d`` (``full``, its
  generator's last layer moved off its zero init) over ``nn.Conv2d``, both without bias.
* **Training step**: forward, cross-entropy, backward and an SGD step of ``aw_resnet20_cifar``
  over ``resnet20_cifar``, 32 px, batch 128.

Every column of a row is measured in one process, the calls interleaved (plain, then each
``impl`` in turn, repeated), so that load from other processes falls on all of them alike; the
table gives medians. ``impl`` columns name kernels of ``awconv.ops.kernels`` (a lever's A/B
registers its ``before`` kernel there and passes both names).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from bench_timing import machine_info
from torch import nn

import awconv.models  # noqa: F401  (registers the models with timm)
from awconv.layers import AWConv2d

__all__ = [
    "RESNET20_LAYERS",
    "CifarLayer",
    "bench_layers",
    "bench_step",
    "format_layer_table",
    "format_step_table",
    "interleaved_medians",
]


@dataclass(frozen=True)
class CifarLayer:
    """A 3x3 convolution C1 -> C2 with padding 1 on an H x H input with stride s."""

    in_channels: int
    out_channels: int
    size: int
    stride: int = 1

    @property
    def label(self) -> str:
        """``C@H`` for C -> C, ``C1->C2@H/2`` for the strided ones."""
        if self.stride == 1 and self.in_channels == self.out_channels:
            return f"{self.in_channels}@{self.size}"
        return f"{self.in_channels}->{self.out_channels}@{self.size}/{self.stride}"


RESNET20_LAYERS = (
    CifarLayer(16, 16, 32),
    CifarLayer(16, 32, 32, 2),
    CifarLayer(32, 32, 16),
    CifarLayer(32, 64, 16, 2),
    CifarLayer(64, 64, 8),
)


def interleaved_medians(works: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each callable; one warm-up call each, then ``repeats`` rounds calling each in turn."""
    for work in works.values():
        work()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _perturb_generators(model: nn.Module) -> None:
    """Moves every AW generator's zero-initialised last layer off zero, as training would."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, AWConv2d):
            with torch.no_grad():
                weight = module.generator.pointconv2.weight
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1)


def _layer_work(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], object]:
    inputs = [x, *module.parameters()]
    return lambda: torch.autograd.grad(module(x), inputs, grad_out)


def bench_layers(
    layer: CifarLayer, batch: int, impls: Sequence[str] = ("auto",), repeats: int = 5
) -> dict[str, float]:
    """Forward + backward ms of ``nn.Conv2d`` (key ``"plain"``) and of ``AWConv2d`` per ``impl``."""
    torch.manual_seed(0)
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, 3, layer.stride, 1, bias=False)
    x = torch.randn(batch, layer.in_channels, layer.size, layer.size, requires_grad=True)
    grad_out = torch.randn_like(conv(x))
    works = {"plain": _layer_work(conv, x, grad_out)}
    for impl in impls:
        aw = AWConv2d(layer.in_channels, layer.out_channels, 3, layer.stride, 1, bias=False, impl=impl)
        aw.weight.data.copy_(conv.weight)
        _perturb_generators(aw)
        works[impl] = _layer_work(aw, x, grad_out)
    return interleaved_medians(works, repeats)


def _step_work(name: str, impl: str, batch: int, image_size: int) -> Callable[[], object]:
    torch.manual_seed(0)
    model = timm.create_model(name).train()
    _perturb_generators(model)
    for module in model.modules():
        if isinstance(module, AWConv2d):
            module.impl = impl
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step


def bench_step(
    batch: int = 128, impls: Sequence[str] = ("auto",), repeats: int = 5, image_size: int = 32
) -> dict[str, float]:
    """Training-step ms of ``resnet20_cifar`` (key ``"plain"``) and ``aw_resnet20_cifar`` per ``impl``."""
    works = {"plain": _step_work("resnet20_cifar", "auto", batch, image_size)}
    for impl in impls:
        works[impl] = _step_work("aw_resnet20_cifar", impl, batch, image_size)
    return interleaved_medians(works, repeats)


def _ratio_cells(times: dict[str, float], impls: Sequence[str]) -> list[str]:
    return [f"{times['plain']:.1f}"] + [f"{times[i]:.1f} ({times[i] / times['plain']:.2f}×)" for i in impls]


def format_layer_table(rows: Sequence[tuple[CifarLayer, int, dict[str, float]]], impls: Sequence[str]) -> str:
    """Markdown: per layer and batch, plain ms and each impl's ms with its multiple of plain."""
    head = ["N", "layer", "plain ms", *(f"AW {i} ms" for i in impls)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer, batch, times in rows:
        lines.append("| " + " | ".join([str(batch), layer.label, *_ratio_cells(times, impls)]) + " |")
    return "\n".join(lines)


def format_step_table(batch: int, times: dict[str, float], impls: Sequence[str]) -> str:
    """Markdown: the training step of both models, with AW's multiple of plain."""
    head = ["N", "resnet20_cifar ms", *(f"aw_resnet20_cifar {i} ms" for i in impls)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| " + " | ".join([str(batch), *_ratio_cells(times, impls)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 8])
    parser.add_argument("--step-batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--impls", nargs="+", default=["auto"])
    parser.add_argument("--no-step", action="store_true", help="skip the training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(f"{info['date']}, {info['cpu']}, {torch.backends.cpu.get_cpu_capability()}, torch {info['torch']}")
    print(f"{args.threads} thread(s), load before: {info['load']}\n")
    rows = [
        (layer, batch, bench_layers(layer, batch, args.impls, args.repeats))
        for batch in args.batch_sizes
        for layer in RESNET20_LAYERS
    ]
    print("Layers, forward + backward, median ms (multiple of plain):\n")
    print(format_layer_table(rows, args.impls))
    if not args.no_step:
        print("\nTraining step, 32 px, median ms (multiple of plain):\n")
        print(format_step_table(args.step_batch, bench_step(args.step_batch, args.impls, args.repeats), args.impls))
    print(f"\nload after: {machine_info()['load']}")


if __name__ == "__main__":
    main()
