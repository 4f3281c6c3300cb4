"""Runs every benchmark and rewrites ``docs/performance.md`` (issue #6's measuring instrument).

Usage: ``python benchmarks/run.py [--quick] [--threads 2] [--output docs/performance.md]``.
``--quick`` (about a minute) runs batch 8, the stride-1 shapes and three models with fewer repeats;
without it the full tables (batch 1, 8 and 32, every model) take about 15 minutes on 2 cores.
``--keep-freed-memory`` sets glibc's allocator as the ``awconv`` command line does.
Ratios are only ever taken between numbers measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_cifar import SECTION_BEGIN, SECTION_END
from bench_levers import LEVERS, bench_levers, format_levers_table
from bench_models import MODELS, ModelResult, bench_model, format_model_table, label, profile_model_step
from bench_operator import (
    METHODS,
    MODES,
    RESNET50_SHAPES,
    RESNET50_STRIDED_SHAPES,
    OperatorResult,
    Shape,
    bench_shape,
    format_memory_table,
    format_time_table,
    profile_layer,
)
from bench_timing import machine_info

from awconv.engine.allocator import keep_freed_memory

COMMAND = "python benchmarks/run.py"
# The code changes measured over issue #6, hand-written: included verbatim at the end.
LEVER_HISTORY = Path(__file__).with_name("lever_history.md")
# Written by bench_compile.py and bench_channels_last.py (minutes each, run on their own): included
# verbatim before the lever history.
SEPARATE_RESULTS = tuple(
    Path(__file__).with_name(name) for name in ("compile_results.md", "channels_last_results.md")
)
STRIDED_METHODS = ("plain", "aw full", "aw lowrank1", "condconv")
LAYER_TARGET, FULL_INFER_TARGET, FULL_TRAIN_TARGET, MEMORY_TARGET, LOWRANK_TARGET = 1.3, 0.5, 0.4, 1.5, 0.8
ALLOCATOR_DEFAULT = "glibc default: large freed blocks are unmapped (run without `--keep-freed-memory`)"
ALLOCATOR_KEPT = "glibc keeps freed blocks for reuse (`--keep-freed-memory`, as the `awconv` CLI does)"
COMPETING = "awconv (compare|detect)|pytest|pip install"


@dataclass(frozen=True)
class Plan:
    """What one run measures and how often.

    ``model_repeats`` maps a batch size to (inference, training) timed calls.
    """

    batches: tuple[int, ...]
    shapes: tuple[Shape, ...]
    strided: tuple[Shape, ...]
    op_repeats: int
    op_budget_s: float
    models: tuple[tuple[str, dict], ...]
    model_batches: tuple[int, ...]
    model_repeats: dict[int, tuple[int, int]]
    profile_shapes: tuple[Shape, ...]
    profile_models: bool
    levers: tuple[str, ...]


QUICK = Plan(
    batches=(8,),
    shapes=RESNET50_SHAPES,
    strided=(),
    op_repeats=3,
    op_budget_s=1.0,
    models=(MODELS[0], MODELS[3], MODELS[4]),
    model_batches=(8,),
    model_repeats={8: (2, 1)},
    profile_shapes=(Shape(512, 7),),
    profile_models=False,
    levers=(),
)
FULL = Plan(
    batches=(1, 8, 32),
    shapes=RESNET50_SHAPES,
    strided=RESNET50_STRIDED_SHAPES,
    op_repeats=10,
    op_budget_s=1.5,
    models=MODELS,
    model_batches=(1, 8, 32),
    model_repeats={1: (5, 3), 8: (5, 3), 32: (3, 2)},
    profile_shapes=(Shape(64, 56), Shape(512, 7)),
    profile_models=True,
    levers=LEVERS,
)


def _competing_processes() -> list[str]:
    """Command lines of running demos and test runs that would disturb the timings."""
    found = subprocess.run(["pgrep", "-af", COMPETING], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if not line.startswith(f"{os.getpid()} ") and "pgrep" not in line]


def _log(message: str, start: float, seen: dict[str, list[str]]) -> None:
    """Prints progress and records in ``seen`` (command line -> [first, last] case) competing processes."""
    print(f"[{time.perf_counter() - start:7.0f} s] {message}", flush=True)
    for line in _competing_processes():
        seen.setdefault(line.split(" ", 1)[-1][:120], [message, message])[1] = message


def _ops_table(ops: Sequence[tuple[str, float, float]]) -> str:
    lines = ["| operator | self CPU ms | share |", "|---|---|---|"]
    lines += [f"| `{name}` | {ms:.2f} | {share:.0f} % |" for name, ms, share in ops]
    return "\n".join(lines)


def _status(ok: bool) -> str:
    return "pass" if ok else "**fail**"


def _targets(ops: Sequence[OperatorResult], models: Sequence[ModelResult]) -> str:
    """The issue's targets as a Markdown table with measured values and pass/fail."""
    rows = []
    forward = [r for r in ops if r.mode == "forward"]
    for batch in sorted({r.batch for r in forward}):
        worst = max(
            (r for r in forward if r.batch == batch),
            key=lambda r: r.ms["aw full"] / (r.ms["plain"] + r.floor_ms),
        )
        ratio = worst.ms["aw full"] / (worst.ms["plain"] + worst.floor_ms)
        rows.append(
            (
                f"every AW layer of ResNet-50, forward, batch {batch}: "
                f"time / (plain conv + floor) ≤ {LAYER_TARGET}",
                f"worst {ratio:.2f} ({worst.shape.label})",
                _status(ratio <= LAYER_TARGET),
            )
        )
        with_head = max(
            r.ms["aw full"] / (r.ms["plain"] + r.floor_ms + r.head_ms) for r in forward if r.batch == batch
        )
        rows.append(
            (
                f"(not a target) the same with the full generator's head GEMM in the floor, batch {batch}: "
                "time / (plain conv + floor + head)",
                f"worst {with_head:.2f}",
                "—",
            )
        )
    by_key = {(r.model, r.batch): r for r in models}

    def model_ratio(name: str, batch: int, attr: str) -> float | None:
        aw, base = by_key.get((name, batch)), by_key.get(("resnet50", batch))
        return getattr(aw, attr) / getattr(base, attr) if aw and base else None

    checks = (
        (
            "AW-ResNet-50 (full) / ResNet-50 inference throughput, batch 8",
            "aw_resnet50",
            8,
            "infer_ips",
            "≥",
            0.5,
        ),
        (
            "AW-ResNet-50 (full) / ResNet-50 training-step throughput, batch 8",
            "aw_resnet50",
            8,
            "train_ips",
            "≥",
            0.4,
        ),
        (
            "AW-ResNet-50 (full) / ResNet-50 peak training memory, batch 32",
            "aw_resnet50",
            32,
            "train_peak",
            "≤",
            1.5,
        ),
        (
            "AW-ResNet-50 (lowrank, rank 1) / ResNet-50 inference throughput, batch 8",
            label(MODELS[4]),
            8,
            "infer_ips",
            "≥",
            0.8,
        ),
    )
    for text, name, batch, attr, relation, bound in checks:
        ratio = model_ratio(name, batch, attr)
        if ratio is None:
            rows.append((f"{text} {relation} {bound}", "not measured in this run", "—"))
            continue
        ok = ratio >= bound if relation == "≥" else ratio <= bound
        rows.append((f"{text} {relation} {bound}", f"{ratio:.2f}", _status(ok)))
    cases = [r for r in ops if r.shape in RESNET50_SHAPES + RESNET50_STRIDED_SHAPES and "condconv" in r.ms]
    slower = [r for r in cases if r.ms["aw full"] >= r.ms["condconv"]]
    measured = "not measured in this run"
    if cases:
        worst = max(cases, key=lambda r: r.ms["aw full"] / r.ms["condconv"])
        measured = (
            f"faster in {len(cases) - len(slower)} of {len(cases)}; worst AW / CondConv "
            f"{worst.ms['aw full'] / worst.ms['condconv']:.2f} "
            f"({worst.shape.label}, N={worst.batch}, {worst.mode})"
        )
    rows.append(
        (
            "AW layer (full) faster than timm CondConv2d (4 experts), every shape, batch and mode",
            measured,
            _status(not slower) if cases else "—",
        )
    )
    lowrank_cases = [r for r in cases if "aw lowrank1" in r.ms]
    if lowrank_cases:
        faster = sum(r.ms["aw lowrank1"] < r.ms["condconv"] for r in lowrank_cases)
        rows.append(
            (
                "(not a target) AW layer (lowrank, rank 1) faster than CondConv2d",
                f"faster in {faster} of {len(lowrank_cases)}",
                "—",
            )
        )
    rows.append(("GPU target", "not measurable: this machine has no GPU", "—"))
    lines = ["| target | measured | result |", "|---|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in rows])


def _document(
    quick: bool,
    before: dict[str, str],
    after: dict[str, str],
    seen: dict[str, list[str]],
    elapsed_s: float,
    ops: Sequence[OperatorResult],
    models: Sequence[ModelResult],
    profiles: Sequence[tuple[str, Sequence[tuple[str, float, float]]]],
    levers: str,
) -> str:
    command = COMMAND + (" --quick" if quick else "")
    machine = "\n".join(
        f"| {key} | {before[key]} |"
        for key in ("cpu", "cores", "torch threads", "allocator", "python", "torch", "timm", "awconv")
    )
    disturbed = (
        "Processes that load the CPU were running during the run (checked at the start and after "
        "every case; seen from ... to): "
        + "; ".join(f"`{line}` ({first} ... {last})" for line, (first, last) in seen.items())
        + ". Absolute numbers are then too slow and ratios less reliable; read them with care."
        if seen
        else "No demo, test run or install was running at the start or after any case."
    )
    parts = [
        "# Performance",
        f"<!-- Generated by `{command}`; edit benchmarks/, not this file. -->",
        f"Measured {before['date']} by `{command}`"
        + (" (quick: batch 8, stride-1 shapes, three models, few repeats)" if quick else "")
        + f" in {elapsed_s / 60:.0f} min.",
        "| machine | |\n|---|---|\n" + machine,
        f"Load before: `{before['load']}`.  \nLoad after: `{after['load']}`.  \n{disturbed}",
        "## Targets (issue #6)",
        _targets(ops, models),
        METHOD_TEXT,
    ]
    for mode in MODES:
        chosen = [r for r in ops if r.mode == mode and r.shape.stride == 1]
        if not chosen:
            continue
        methods = [m for m in METHODS if all(m in r.ms for r in chosen)]
        parts += [
            f"## Operator, {mode}: time",
            "Median ms; in brackets the multiple of the plain convolution's time. Conv `C@H` is a 3×3 "
            "convolution C → C on an H×H input; `/2` marks stride 2.",
            format_time_table(chosen, methods),
            f"## Operator, {mode}: peak memory",
            "MiB of tensor memory held above the inputs and parameters (the `grouped`, `bmm`, `loop` "
            "rows also hold the given attention, its size in the second column).",
            format_memory_table(chosen, methods),
        ]
        strided = [r for r in ops if r.mode == mode and r.shape.stride != 1]
        if strided:
            parts += [
                f"### Strided layers, {mode}",
                format_time_table(strided, STRIDED_METHODS),
                format_memory_table(strided, STRIDED_METHODS),
            ]
    parts += [
        "## Models",
        "ResNet-50 variants at 224 px, float32; in brackets the ratio to `resnet50` at the same batch "
        "size in this run.",
        format_model_table(models),
        "## Where the time goes",
        "Operators with the most self CPU time (`torch.profiler`, one call after a warm-up).",
    ]
    for title, ops_ in profiles:
        parts += [f"### {title}", _ops_table(ops_)]
    if levers:
        parts += [
            "## Levers, one at a time",
            "Inference at batch 8, 224 px (`benchmarks/bench_levers.py`): each row changes one setting "
            "from the baseline (float32, contiguous, eager, `impl=auto`, this run's allocator) for both "
            "models.",
            levers,
        ]
    parts += [path.read_text().strip() for path in SEPARATE_RESULTS if path.exists()]
    parts.append(LEVER_HISTORY.read_text().strip())
    return "\n\n".join(parts) + "\n"


METHOD_TEXT = """## How it is measured

* **Time**: the median wall time (`time.perf_counter`) of repeated calls after one warm-up call,
  with `torch.set_num_threads` set explicitly (the table above). Operator cases take at most 10 calls
  and fewer (at least 3) where 10 would exceed a time budget; models take the repeats the run's plan
  sets. Forward runs under `torch.inference_mode`; forward + backward computes the gradients of the
  input and every parameter (and of the given attention for the `aw_conv2d` paths) with
  `torch.autograd.grad` against a fixed random output gradient.
* **Peak memory**: one more call under `torch.profiler` with `profile_memory=True`; the allocator's
  raw allocation and free events are replayed in time order and the peak of their running sum is
  the most tensor memory the call held at once above what was live before it. That counts
  everything PyTorch's CPU allocator hands out (outputs, intermediates, saved tensors, gradients,
  oneDNN buffers allocated through it) and nothing else (Python objects, library code), and it is
  exact and independent of what ran before in the process, which peak RSS is not. Model peaks add
  the parameters and the batch, which are live throughout.
* **Floor**: for N samples and a C → C 3×3 layer, the median time of `dst.copy_(src)` on
  N·C·C·9 float32 values in the same run: one read and one write of every attention value, the
  least memory traffic an operator that materialises the weight-shaped attention adds to the
  plain convolution. The layer target compares the AW layer (`AWConv2d(x)`: generator and fused
  operator) with plain conv + floor.
* **Head**: the matrix products of the `full` generator's last layer (Pointconv2, d → C·C per
  tap, for N·9 rows) into preallocated outputs: one in forward; four in forward + backward
  (forward, its regeneration in backward, the gradients of its input and weight). It is arithmetic
  the design cannot skip (at 512@7, d = 32, it is 65% of the convolution's multiply-adds), so
  `aw full / (plain+floor+head)` shows how close the operator is to what the `full` generator allows.
* **Methods**: `plain` is `F.conv2d`; `grouped`, `bmm`, `loop` are `aw_conv2d(x, W, A, impl=...)`
  with the attention A given; `aw full` and `aw lowrank1` call an `AWConv2d` layer (the attention is
  made inside by `aw_conv2d_fused` and never stored); `condconv` is timm's `CondConv2d` with 4
  experts and EfficientNet's routing (`sigmoid(Linear(avg_pool(x)))`); `odconv` is the ODConv-style
  layer of `benchmarks/bench_peers.py` (4 kernels; attentions over taps, input channels, output
  channels and kernels from one pool + FC + ReLU trunk).
* **Models**: inference is `model(x)` in eval mode; a training step is forward, cross-entropy,
  backward and a plain SGD step in train mode. Images/s = batch / median time."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, three models, few repeats")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="let glibc reuse freed blocks (awconv.engine.allocator.keep_freed_memory, as the CLI does)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/performance.md"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    kept = args.keep_freed_memory and keep_freed_memory()
    before, seen = machine_info(), {}
    before["allocator"] = ALLOCATOR_KEPT if kept else ALLOCATOR_DEFAULT
    _log("start", start, seen)
    print(f"{before['cpu']}, {before['torch threads']} threads, torch {before['torch']}; {before['load']}")
    ops: list[OperatorResult] = []
    for mode in MODES:
        for batch in plan.batches:
            for shape in plan.shapes:
                ops.append(bench_shape(shape, batch, mode, METHODS, plan.op_repeats, plan.op_budget_s))
                _log(f"operator {mode} N={batch} {shape.label}", start, seen)
            for shape in plan.strided if mode == "forward" else ():
                ops.append(
                    bench_shape(shape, batch, mode, STRIDED_METHODS, plan.op_repeats, plan.op_budget_s)
                )
                _log(f"operator {mode} N={batch} {shape.label}", start, seen)
    models: list[ModelResult] = []
    for batch in plan.model_batches:
        infer_repeats, train_repeats = plan.model_repeats[batch]
        for spec in plan.models:
            models.append(bench_model(spec, batch, infer_repeats, train_repeats))
            _log(f"model {label(spec)} N={batch}", start, seen)
    profile_batch = max(plan.batches)
    profiles = [
        (
            f"AW layer (full), {shape.label}, N={profile_batch}, {mode}",
            profile_layer(shape, profile_batch, mode),
        )
        for shape in plan.profile_shapes
        for mode in MODES
    ]
    if plan.profile_models:
        for train in (False, True):
            title = f"aw_resnet50 (full), N=8, {'training step' if train else 'inference'}"
            profiles.append((title, profile_model_step(MODELS[3], 8, train)))
    _log("profiles", start, seen)
    levers = format_levers_table(bench_levers(8, levers=plan.levers)) if plan.levers else ""
    _log("levers", start, seen)
    text = _document(
        args.quick, before, machine_info(), seen, time.perf_counter() - start, ops, models, profiles, levers
    )
    old = args.output.read_text() if args.output.exists() else ""
    if SECTION_BEGIN in old and SECTION_END in old:  # bench_cifar.py's section stays as it was
        text += (
            "\n"
            + SECTION_BEGIN
            + old.split(SECTION_BEGIN, 1)[1].split(SECTION_END, 1)[0]
            + SECTION_END
            + "\n"
        )
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
