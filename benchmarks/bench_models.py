"""Model benchmark: ResNet-50 with and without attention, inference and training throughput, memory.

Usage: ``python benchmarks/bench_models.py [--batch-sizes 1 8] [--repeats 3] [--threads 2]``
prints the table; ``benchmarks/run.py`` runs it as part of ``docs/performance.md``.

Per model and batch size, on random 224 x 224 images:

* inference: ``model(x)`` in eval mode under ``torch.inference_mode``;
* training step: train mode, forward, cross-entropy on random labels, backward and
  ``torch.optim.SGD`` (no momentum, so the first step already holds all the memory a later one
  does) with ``zero_grad(set_to_none=True)``;
* peak memory of each: parameters + batch + the most tensor memory the call adds
  (``bench_timing.peak_memory_bytes``); the profiled call is also the warm-up of the timing.

Throughput is images / median time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from bench_timing import median_ms, peak_memory_bytes, top_ops

import awconv  # noqa: F401  (registers the awconv models with timm)

__all__ = ["MODELS", "ModelResult", "bench_model", "format_model_table", "label", "profile_model_step"]

ModelSpec = tuple[str, dict[str, Any]]

MODELS: tuple[ModelSpec, ...] = (
    ("resnet50", {}),
    ("seresnet50", {}),
    ("cbamresnet50", {}),
    ("aw_resnet50", {}),
    ("aw_resnet50", {"generator": "lowrank", "rank": 1}),
    ("aw_resnet50", {"generator": "lowrank", "rank": 4}),
    ("aw_seresnet50", {}),
)
MIB = 2**20


def label(spec: ModelSpec) -> str:
    """``name`` or ``name (key=value, ...)``."""
    name, kwargs = spec
    return name + (" (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else "")


@dataclass
class ModelResult:
    """Throughput (images/s) and peak memory (bytes) of one model at one batch size."""

    model: str
    batch: int
    infer_ips: float
    train_ips: float
    infer_peak: int
    train_peak: int


def _work(model: torch.nn.Module, batch: int, image_size: int, train: bool) -> Callable[[], object]:
    """One inference pass or one training step on a fixed random batch."""
    x = torch.randn(batch, 3, image_size, image_size)
    if not train:
        model.eval()

        def infer() -> object:
            with torch.inference_mode():
                return model(x)

        return infer
    model.train()
    labels = torch.randint(0, 1000, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step


def _measure(work: Callable[[], object], held: int, repeats: int) -> tuple[float, int]:
    """Median ms of ``work`` and its peak memory including ``held`` bytes; the profiled call warms up."""
    peak = held + peak_memory_bytes(work)
    return median_ms(work, repeats, warmup=False), peak


def bench_model(
    spec: ModelSpec, batch: int, infer_repeats: int = 5, train_repeats: int = 3, image_size: int = 224
) -> ModelResult:
    """Inference and training-step throughput and peak memory of one model.

    Args:
        spec: (registered timm name, keyword arguments).
        batch: images per call.
        infer_repeats: timed inference calls (median taken).
        train_repeats: timed training steps (median taken).
        image_size: height and width of the images.
    """
    torch.manual_seed(0)
    model = timm.create_model(spec[0], **spec[1])
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    held = params + batch * 3 * image_size * image_size * 4
    infer_ms, infer_peak = _measure(_work(model, batch, image_size, False), held, infer_repeats)
    train_ms, train_peak = _measure(_work(model, batch, image_size, True), held, train_repeats)
    return ModelResult(
        label(spec), batch, batch * 1e3 / infer_ms, batch * 1e3 / train_ms, infer_peak, train_peak
    )


def profile_model_step(spec: ModelSpec, batch: int, train: bool, count: int = 8, image_size: int = 224):
    """The operators taking the most self CPU time in one inference pass or training step.

    Returns:
        ``(name, self CPU ms, share in %)`` as ``bench_timing.top_ops``.
    """
    torch.manual_seed(0)
    model = timm.create_model(spec[0], **spec[1])
    return top_ops(_work(model, batch, image_size, train), count)


def _cell(value: float, reference: float | None, digits: int) -> str:
    """``value`` and, with a reference, its ratio to it."""
    return f"{value:.{digits}f}" + (f" ({value / reference:.2f}×)" if reference else "")


def format_model_table(results: Sequence[ModelResult], baseline: str = "resnet50") -> str:
    """Markdown: throughput and peak memory per model and batch, with ratios to ``baseline``."""
    base = {r.batch: r for r in results if r.model == baseline}
    head = ["model", "N", "inference img/s", "training img/s", "inference peak MiB", "training peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        b = base.get(r.batch)
        row = [
            r.model,
            str(r.batch),
            _cell(r.infer_ips, b and b.infer_ips, 2),
            _cell(r.train_ips, b and b.train_ips, 2),
            _cell(r.infer_peak / MIB, b and b.infer_peak / MIB, 0),
            _cell(r.train_peak / MIB, b and b.train_peak / MIB, 0),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [
        bench_model(spec, batch, args.repeats, args.repeats) for batch in args.batch_sizes for spec in MODELS
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 224 px, float32\n")
    print(format_model_table(results))


if __name__ == "__main__":
    main()
