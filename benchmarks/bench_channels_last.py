"""channels_last against NCHW: the AW layer as it is, and whether a channels_last path would be faster.

Usage: ``python benchmarks/bench_channels_last.py [--batch-size 32] [--repeats 10] [--threads 1]
[--output benchmarks/channels_last_results.md]`` prints the table and writes it to ``--output``,
which ``benchmarks/run.py`` includes in ``docs/performance.md``.

At ResNet-20's and ResNet-50's 3x3 shapes (C -> C, padding 1), forward + backward (the input's and
every parameter's gradient), median ms of:

* ``plain``: ``nn.Conv2d`` on an NCHW and on a channels_last input (oneDNN's own layouts);
* ``AWConv2d``: the layer on an NCHW and on a channels_last input; its kernels compute in NCHW, so
  a channels_last input costs a conversion in and one out;
* ``loop``: a per-sample convolution written for the layout, one ``F.conv2d`` per sample with its
  modulated kernel (the attention given), in NCHW and in channels_last throughout: the cheapest
  channels_last-native path available from ATen, the candidate a channels_last kernel would
  have to beat.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_timing import machine_info, median_ms
from torch import Tensor, nn

from awconv import AWConv2d

__all__ = ["LayoutResult", "bench_layouts", "format_layout_table"]

SHAPES = ((16, 32), (32, 16), (64, 8), (256, 14))
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass(frozen=True)
class LayoutResult:
    """Forward + backward ms of each method and layout at one shape."""

    channels: int
    size: int
    batch: int
    ms: dict[tuple[str, str], float]


def _loop(x: Tensor, weight: Tensor, attention: Tensor, layout: torch.memory_format) -> Tensor:
    """One F.conv2d per sample; every sample's kernel (C2, C1, 3, 3) in ``layout``, made in one pass."""
    kernels = weight * (1 + attention)  # (N, C2, C1, 3, 3)
    if layout == torch.channels_last:
        kernels = kernels.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return torch.cat([F.conv2d(x[n : n + 1], kernels[n], padding=1) for n in range(x.shape[0])])


def _time(fn, arguments: tuple, tensors: list[Tensor], repeats: int) -> float:
    """Median ms of ``fn(*arguments)`` and the gradients of ``tensors``."""

    def step() -> None:
        out = fn(*arguments)
        torch.autograd.grad(out, tensors, torch.ones_like(out))

    return median_ms(step, repeats, budget_s=10.0)


def bench_layouts(channels: int, size: int, batch: int, repeats: int) -> LayoutResult:
    """Times every method in both layouts at one shape."""
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    layer = AWConv2d(channels, channels, 3, padding=1, bias=False)
    with torch.no_grad():
        layer.generator.pointconv2.weight.normal_(0, 0.05)
    attention = (torch.rand(batch, channels, channels, 3, 3) - 0.5).requires_grad_(True)
    ms = {}
    for layout_name, layout in LAYOUTS.items():
        x = torch.randn(batch, channels, size, size).contiguous(memory_format=layout).requires_grad_(True)
        ms["plain", layout_name] = _time(conv, (x,), [x, *conv.parameters()], repeats)
        ms["AWConv2d", layout_name] = _time(layer, (x,), [x, *layer.parameters()], repeats)
        loop_arguments = (x, conv.weight, attention, layout)
        ms["loop", layout_name] = _time(_loop, loop_arguments, [x, conv.weight, attention], repeats)
    return LayoutResult(channels, size, batch, ms)


def format_layout_table(results: list[LayoutResult]) -> str:
    """Markdown: ms per method and layout, and channels_last / NCHW for each method."""
    methods = ("plain", "AWConv2d", "loop")
    header = "| conv | N | " + " | ".join(f"{m} NCHW | {m} channels_last | {m} cl / NCHW" for m in methods)
    lines = [header + " |", "|---|---|" + "---|" * (3 * len(methods))]
    for r in results:
        cells = []
        for method in methods:
            nchw, cl = r.ms[method, "NCHW"], r.ms[method, "channels_last"]
            cells += [f"{nchw:.1f}", f"{cl:.1f}", f"{cl / nchw:.2f}"]
        lines.append(f"| {r.channels}@{r.size} | {r.batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("channels_last_results.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    results = [bench_layouts(c, s, args.batch_size, args.repeats) for c, s in SHAPES]
    capability = torch.backends.cpu.get_cpu_capability()
    text = "\n\n".join(
        [
            "## channels_last",
            f"Measured {info['date']} by `python benchmarks/bench_channels_last.py --batch-size "
            f"{args.batch_size} --threads {args.threads}` on {info['cpu']} (CPU capability "
            f"{capability}), torch {info['torch']}; load before: `{info['load']}`. Forward + backward "
            "ms of a 3×3 convolution C → C (`C@H`: C channels, H×H input); `cl / NCHW` below 1 means "
            "channels_last is faster. `loop` is a per-sample convolution (attention given) written "
            "for each layout, the channels_last-native candidate.",
            format_layout_table(results),
        ]
    )
    args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
