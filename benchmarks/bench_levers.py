"""Levers, one at a time: what each setting does to AW-ResNet-50's speed beside plain ResNet-50.

Usage: ``python benchmarks/bench_levers.py [--batch 8] [--threads 2]`` prints the table;
``benchmarks/run.py`` runs it as part of ``docs/performance.md``.

Each lever changes one thing from the baseline (float32, contiguous, eager, ``impl="auto"``, the
allocator of the running process) and is applied to both models, so every row's ratio is
AW / plain under the same setting, measured back to back in this run:

* ``channels_last``: the models and the batch in the channels-last memory format;
* ``bf16 autocast``: ``torch.autocast("cpu", torch.bfloat16)``;
* ``torch.compile``: ``torch.compile(model)`` (Inductor; compile time excluded);
* ``impl=grouped`` / ``impl=bmm`` / ``impl=loop``: every AW layer on one convolution path instead
  of ``auto``'s per-shape choice (plain ResNet-50 is unchanged);
* ``keep freed memory``: glibc keeps freed blocks (``awconv.engine.allocator``), measured in a
  child process because the setting cannot be undone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import timm
import torch
from bench_timing import median_ms
from torch import nn

from awconv.engine.allocator import keep_freed_memory
from awconv.layers import AWConv2d

__all__ = ["LEVERS", "LeverResult", "bench_levers", "format_levers_table"]

LEVERS = (
    "baseline",
    "channels_last",
    "bf16 autocast",
    "torch.compile",
    "impl=grouped",
    "impl=bmm",
    "impl=loop",
    "keep freed memory",
)
MODELS = ("resnet50", "aw_resnet50")


@dataclass
class LeverResult:
    """Inference images/s of plain and AW ResNet-50 under one lever (None: it failed, see ``error``)."""

    lever: str
    plain_ips: float | None
    aw_ips: float | None
    error: str = ""


def _model(name: str, lever: str) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    if lever.startswith("impl="):
        for module in model.modules():
            if isinstance(module, AWConv2d):
                module.impl = lever.removeprefix("impl=")
    if lever == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def _context(lever: str) -> Iterator[None]:
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=lever == "bf16 autocast"):
        yield


def _images_per_second(name: str, lever: str, batch: int, repeats: int) -> float:
    model = _model(name, lever)
    x = torch.randn(batch, 3, 224, 224)
    if lever == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    run: Callable[[torch.Tensor], object] = torch.compile(model) if lever == "torch.compile" else model
    with _context(lever):
        run(x)  # warm-up (and compilation)
        ms = median_ms(lambda: run(x), repeats, budget_s=60.0)
    return 1000 * batch / ms


def _child(batch: int, repeats: int, threads: int) -> LeverResult:
    """The baseline in a child process whose allocator keeps freed memory."""
    command = [sys.executable, __file__, "--child", "--batch", str(batch), "--repeats", str(repeats)]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return LeverResult("keep freed memory", None, None, done.stderr.strip().splitlines()[-1])
    values = json.loads(done.stdout.strip().splitlines()[-1])
    return LeverResult("keep freed memory", values["plain"], values["aw"])


def bench_levers(
    batch: int = 8, repeats: int = 5, levers: Sequence[str] = LEVERS, threads: int | None = None
) -> list[LeverResult]:
    """Measures every lever; a lever that raises is recorded with its error instead of stopping the run."""
    results = []
    for lever in levers:
        if lever == "keep freed memory":
            results.append(_child(batch, repeats, threads or torch.get_num_threads()))
            continue
        try:
            ips = [_images_per_second(name, lever, batch, repeats) for name in MODELS]
            results.append(LeverResult(lever, *ips))
        except Exception as error:
            results.append(LeverResult(lever, None, None, f"{type(error).__name__}: {error}"[:200]))
    return results


def format_levers_table(results: Sequence[LeverResult]) -> str:
    """Markdown: images/s of both models, AW / plain, and each against its own baseline."""
    base = next((r for r in results if r.lever == "baseline"), None)
    head = ["lever", "resnet50 images/s", "aw_resnet50 images/s", "AW / plain", "AW vs AW baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.plain_ips is None or r.aw_ips is None:
            lines.append(f"| {r.lever} | failed: {r.error} | | | |")
            continue
        against = f"{r.aw_ips / base.aw_ips:.2f}×" if base and base.aw_ips else "—"
        cells = [r.lever, f"{r.plain_ips:.2f}", f"{r.aw_ips:.2f}", f"{r.aw_ips / r.plain_ips:.2f}", against]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        keep_freed_memory()
        plain, aw = (_images_per_second(name, "baseline", args.batch, args.repeats) for name in MODELS)
        print(json.dumps({"plain": plain, "aw": aw}))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, inference images/s")
    print(format_levers_table(bench_levers(args.batch, args.repeats, threads=args.threads)))


if __name__ == "__main__":
    main()
