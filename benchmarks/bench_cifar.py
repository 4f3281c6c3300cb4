"""ResNet-20's AW layers and training step beside their plain counterparts, on the CPU.

Usage: ``python benchmarks/bench_cifar.py [--batch-sizes 128 8] [--repeats 5] [--threads 1]
[--impls auto] [--resnet50] [--write-doc]`` prints the tables (issue 15's targets: every layer
<= 1.5x plain at batch 128 and <= 2x at batch 8, the training step <= 1.5x); ``--write-doc`` puts
them into ``docs/performance.md`` between the markers ``SECTION_BEGIN`` and ``SECTION_END``
(``benchmarks/run.py`` keeps that section when it rewrites the file).

* **Layers**: every 3x3 convolution shape of ResNet-20's blocks (16@32, 32@16, 64@8 and the two
  strided ones, 16->32 at 32 px and 32->64 at 16 px), forward + backward (the gradients of the input
  and every parameter against a fixed random output gradient): an ``AWConv2d`` (``full``, its
  generator's last layer moved off its zero init) over ``nn.Conv2d``, both without bias.
* **Grouped conv alone**: the per-sample convolution of the fused ``grouped`` path by itself
  (``awconv.ops.paths``, kernels made beforehand, the same chunks), forward + backward: the part of
  an AW layer no ATen path avoids, so its multiple of plain bounds what the operator can reach.
* **Training step**: forward, cross-entropy, backward and an SGD step of ``aw_resnet20_cifar``
  over ``resnet20_cifar``, 32 px, batch 128.
* The same step at ``make demo``'s shape (16 px, batch 64), from which the demo's time is estimated.
* ``--resnet50``: AW-ResNet-50 (``full`` and ``lowrank`` rank 1) over ResNet-50, 224 px, batch 8,
  ``--resnet50-threads`` threads (2): inference throughput, and the training step of ``full``.

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
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from bench_timing import machine_info
from torch import nn

import awconv.models  # noqa: F401  (registers the models with timm)
from awconv.layers import AWConv2d
from awconv.ops.fused_aten import CACHE_CHUNK_BYTES
from awconv.ops.paths import per_sample_conv, per_sample_conv_backward

__all__ = [
    "CONV_ALONE",
    "RESNET20_LAYERS",
    "SECTION_BEGIN",
    "SECTION_END",
    "CifarLayer",
    "bench_layers",
    "bench_resnet50",
    "bench_step",
    "doc_section",
    "format_layer_table",
    "format_resnet50_table",
    "format_step_table",
    "interleaved_medians",
    "write_doc_section",
]


SECTION_BEGIN = "<!-- bench_cifar.py: begin -->"
SECTION_END = "<!-- bench_cifar.py: end -->"
CONV_ALONE = "grouped conv alone"
DEMO_BATCH, DEMO_IMAGE_SIZE = 64, 16  # the Makefile's demo recipe (MNIST at 16 px, batch 64)
DOC = Path(__file__).resolve().parents[1] / "docs/performance.md"
RESNET50_SPECS = {
    "resnet50": {},
    "aw_resnet50 full": {},
    "aw_resnet50 lowrank1": {"generator": "lowrank", "rank": 1},
}


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


def _conv_alone_work(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, stride: int):
    """The per-sample grouped convolution alone, forward + backward, on kernels made beforehand, in
    the chunks the fused ``grouped`` path uses: what remains of an AW layer without its attention."""
    x = x.detach()
    kernels = weight.detach() * (1 + 0.1 * torch.randn(x.shape[0], *weight.shape))
    chunk = max(1, CACHE_CHUNK_BYTES // (weight.numel() * weight.element_size()))
    geometry = ((stride, stride), (1, 1), (1, 1))

    def work() -> None:
        for start in range(0, x.shape[0], chunk):
            samples = slice(start, start + chunk)
            per_sample_conv("grouped", x[samples], kernels[samples], *geometry, 1)
            per_sample_conv_backward("grouped", x[samples], kernels[samples], grad_out[samples], *geometry, 1)

    return work


def bench_layers(
    layer: CifarLayer, batch: int, impls: Sequence[str] = ("auto",), repeats: int = 5
) -> dict[str, float]:
    """Forward + backward ms of ``nn.Conv2d`` (key ``"plain"``), of the per-sample convolution alone
    (key ``CONV_ALONE``) and of ``AWConv2d`` per ``impl``."""
    torch.manual_seed(0)
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, 3, layer.stride, 1, bias=False)
    x = torch.randn(batch, layer.in_channels, layer.size, layer.size, requires_grad=True)
    grad_out = torch.randn_like(conv(x))
    works = {"plain": _layer_work(conv, x, grad_out)}
    works[CONV_ALONE] = _conv_alone_work(x, conv.weight, grad_out, layer.stride)
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


def _inference_work(name: str, kwargs: dict, batch: int) -> Callable[[], object]:
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    _perturb_generators(model)
    x = torch.randn(batch, 3, 224, 224)

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    return infer


def _train_work(name: str, kwargs: dict, batch: int, image_size: int) -> Callable[[], object]:
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).train()
    _perturb_generators(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, model.num_classes, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step


def _resnet50_specs(impls: Sequence[str]) -> dict[str, dict]:
    """ResNet-50 and each AW-ResNet-50 of ``RESNET50_SPECS`` per ``impl`` (labelled when not ``auto``)."""
    specs = {"resnet50": {}}
    for label, kwargs in RESNET50_SPECS.items():
        if label == "resnet50":
            continue
        for impl in impls:
            specs[label if impl == "auto" else f"{label} impl={impl}"] = {**kwargs, "impl": impl}
    return specs


def bench_resnet50(
    batch: int = 8, repeats: int = 3, impls: Sequence[str] = ("auto",)
) -> tuple[dict[str, float], dict[str, float]]:
    """Inference ms of ResNet-50 and the AW-ResNet-50s, and training-step ms of ResNet-50 and ``full``."""
    specs = _resnet50_specs(impls)
    infer = {label: _inference_work(label.split()[0], kwargs, batch) for label, kwargs in specs.items()}
    train = {
        label: _train_work(label.split()[0], kwargs, batch, 224)
        for label, kwargs in specs.items()
        if label == "resnet50" or label.startswith("aw_resnet50 full")
    }
    return interleaved_medians(infer, repeats), interleaved_medians(train, repeats)


def format_resnet50_table(batch: int, infer: dict[str, float], train: dict[str, float]) -> str:
    """Markdown: images/s of each model and its share of ResNet-50's."""
    head = ["model", "inference img/s", "share of resnet50", "training img/s", "share of resnet50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ms in infer.items():
        cells = [name, f"{1e3 * batch / ms:.2f}", f"{infer['resnet50'] / ms:.2f}"]
        if name in train:
            cells += [f"{1e3 * batch / train[name]:.2f}", f"{train['resnet50'] / train[name]:.2f}"]
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def doc_section(body: str) -> str:
    """The section of ``docs/performance.md`` this benchmark owns, between its markers."""
    return f"{SECTION_BEGIN}\n{body.strip()}\n{SECTION_END}"


def write_doc_section(section: str, path: Path = DOC) -> None:
    """Replaces the marked section of ``path``, or appends it where there is none."""
    text = path.read_text()
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def _ratio_cells(times: dict[str, float], impls: Sequence[str]) -> list[str]:
    return [f"{times['plain']:.1f}"] + [f"{times[i]:.1f} ({times[i] / times['plain']:.2f}×)" for i in impls]


def format_layer_table(rows: Sequence[tuple[CifarLayer, int, dict[str, float]]], impls: Sequence[str]) -> str:
    """Markdown: per layer and batch, plain ms, the per-sample convolution alone and each impl's ms,
    each with its multiple of plain."""
    columns = [CONV_ALONE, *impls]
    head = ["N", "layer", "plain ms", f"{CONV_ALONE} ms", *(f"AW {i} ms" for i in impls)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer, batch, times in rows:
        lines.append("| " + " | ".join([str(batch), layer.label, *_ratio_cells(times, columns)]) + " |")
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
    parser.add_argument("--resnet50", action="store_true", help="also AW-ResNet-50 against ResNet-50")
    parser.add_argument("--resnet50-threads", type=int, default=2)
    parser.add_argument("--resnet50-repeats", type=int, default=3)
    parser.add_argument("--write-doc", action="store_true", help="write the tables into docs/performance.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    parts = [
        "## ResNet-20 widths and AW-ResNet-50 (issue 15)",
        f"Measured {info['date']} by `python benchmarks/bench_cifar.py`: {info['cpu']}, "
        f"{info['cores']} cores, `get_cpu_capability()` {torch.backends.cpu.get_cpu_capability()}, "
        f"torch {info['torch']}, {args.threads} thread(s). Load before: `{info['load']}`.",
    ]
    rows = [
        (layer, batch, bench_layers(layer, batch, args.impls, args.repeats))
        for batch in args.batch_sizes
        for layer in RESNET20_LAYERS
    ]
    parts += [
        "Layers, forward + backward, median ms (multiple of plain):",
        format_layer_table(rows, args.impls),
    ]
    if not args.no_step:
        step = bench_step(args.step_batch, args.impls, args.repeats)
        parts += ["Training step, 32 px, median ms (multiple of plain):"]
        parts.append(format_step_table(args.step_batch, step, args.impls))
        demo = bench_step(DEMO_BATCH, args.impls, args.repeats, image_size=DEMO_IMAGE_SIZE)
        parts += [f"Training step at `make demo`'s shape ({DEMO_IMAGE_SIZE} px, 3 channels), median ms:"]
        parts.append(format_step_table(DEMO_BATCH, demo, args.impls))
    if args.resnet50:
        torch.set_num_threads(args.resnet50_threads)
        infer, train = bench_resnet50(8, args.resnet50_repeats, args.impls)
        parts.append(f"224 px, batch 8, {args.resnet50_threads} threads, medians of {args.resnet50_repeats}:")
        parts.append(format_resnet50_table(8, infer, train))
    parts.append(f"Load after: `{machine_info()['load']}`.")
    text = "\n\n".join(parts)
    print(text)
    if args.write_doc:
        write_doc_section(doc_section(text))


if __name__ == "__main__":
    main()
