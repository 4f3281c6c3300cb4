"""Compiled training step against eager: ``aw_resnet20_cifar``, with ``resnet20_cifar`` beside it.

Usage: ``python benchmarks/bench_compile.py [--batch-size 32] [--repeats 5] [--threads 1]
[--output benchmarks/compile_results.md]`` prints the table and writes it to ``--output``, which
``benchmarks/run.py`` includes in ``docs/performance.md``. About 10 minutes on 2 busy cores, most of
it compilation.

Per model, on random 32 x 32 images in train mode: a training step is forward, cross-entropy,
backward and ``torch.optim.SGD.step`` with ``zero_grad(set_to_none=True)``. *Eager* runs the model
as it is; *compiled* runs ``torch.compile(model)`` (inductor, default options: the first new batch
size recompiles once with a dynamic batch, as for every model). Reported: the median step time of
each, their ratio, the first compiled step (compilation included), and the number of graphs
dynamo has built after steps at the batch size, one less and half of it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from bench_timing import machine_info, median_ms
from torch import nn

import awconv  # noqa: F401  (registers the awconv models with timm)

__all__ = ["CompileResult", "bench_compile", "format_compile_table"]

MODELS = ("resnet20_cifar", "aw_resnet20_cifar")


@dataclass(frozen=True)
class CompileResult:
    """Training-step times (ms) of one model, eager and compiled, and the graphs built."""

    model: str
    batch: int
    eager_ms: float
    compiled_ms: float
    first_compiled_s: float
    graphs: int


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: int, image_size: int):
    x = torch.randn(batch, 3, image_size, image_size)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def _unique_graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def bench_compile(name: str, batch: int, repeats: int, image_size: int = 32) -> CompileResult:
    """Times eager and compiled training steps of model ``name`` at one batch size."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    eager_ms = median_ms(_step(model, optimizer, batch, image_size), repeats)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model)
    step = _step(compiled, optimizer, batch, image_size)
    first_compiled_s = median_ms(step, 1, warmup=False) / 1e3
    compiled_ms = median_ms(step, repeats)
    for other in (batch - 1, batch // 2):
        _step(compiled, optimizer, other, image_size)()
    return CompileResult(name, batch, eager_ms, compiled_ms, first_compiled_s, _unique_graphs())


def format_compile_table(results: list[CompileResult]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| model | N | eager ms | compiled ms | compiled / eager | first compiled step s | graphs |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.batch} | {r.eager_ms:.1f} | {r.compiled_ms:.1f} | "
        f"{r.compiled_ms / r.eager_ms:.2f} | {r.first_compiled_s:.0f} | {r.graphs} |"
        for r in results
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("compile_results.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    results = [bench_compile(name, args.batch_size, args.repeats) for name in MODELS]
    capability = torch.backends.cpu.get_cpu_capability()
    text = "\n\n".join(
        [
            "## Compiled training step (`torch.compile`)",
            f"Measured {info['date']} by `python benchmarks/bench_compile.py --batch-size "
            f"{args.batch_size} --threads {args.threads}` on {info['cpu']} (CPU capability "
            f"{capability}), torch {info['torch']}; load before: `{info['load']}`. A training step "
            "at 32 px in train mode; `graphs`: what dynamo built after steps at N, N - 1 and N / 2 "
            "(the AW layers add none: both models build the same number).",
            format_compile_table(results),
        ]
    )
    args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
