"""One command on a GPU machine: the CUDA checks and the GPU benchmarks, written to docs/performance-gpu.md.

Usage, from the repository root::

    PYTHONPATH=src python3 benchmarks/gpu.py            # everything, well under 9 minutes on an H100
    PYTHONPATH=src python3 benchmarks/gpu.py --quick    # about 3 minutes: the headline numbers only
    python benchmarks/gpu.py --device cpu --tiny        # a smoke test of every code path on the CPU

Without CUDA (and without ``--device cpu --tiny``) it refuses in one line. Only torch, timm and
the standard library are used (the lent machine has torch 2.11, timm and no package access).

1. **Checks**: every check of ``tests/device_checks.py`` on CUDA (every operator path, Triton
   included, the layer, AW-ResNet-20, bf16/fp16 autocast, channels_last, torch.compile, a
   one-process NCCL DDP step), each against float64 on the GPU. A failure is recorded, not raised.
2. **Models**: ResNet-50 and AW-ResNet-50 (``full``; ``lowrank`` rank 1), each AW model with
   ``impl="auto"`` and ``impl="triton"``: training throughput (SGD step, bf16 autocast,
   channels_last, batch 128, 224 px) and peak memory.
3. **Operator**: one 3x3 layer C -> C at ResNet-50's 3x3 shapes (the four stride-1 ones and the
   three strided ones), batch 32 and 128, bf16 (autocast) and fp32 (TF32, as
   ``torch.set_float32_matmul_precision("high")`` and cuDNN's default allow), forward (no grad)
   and forward+backward: cuDNN's plain ``nn.Conv2d``, ``AWConv2d`` ``full`` along every path
   (grouped, bmm, loop, triton) and ``lowrank`` rank 1 (auto, triton); median time and peak memory.

Time budget (H100 arithmetic): the checks take ~1.5 min (most of it inductor compiling the
compile checks); the models ~1 min (ResNet-50 trains ~3000 img/s, so a step is ~45 ms; an AW step
up to ~10x that on the CPU-chosen paths; 3 warm-up + up to 10 timed steps or 3 s each, 5 models);
the operator 392 timings of at most 0.2 s + 2 warm-up calls each (~2.5 min), plus Triton's
compilation of ~60 kernel specialisations at ~1-2 s (~1.5 min): ~6.5 min. ``--budget-s``
(default 420 s, leaving the item that runs when it ends time to finish before 9 min) cuts short
a section that would run past it and marks what it skipped. ``--quick`` runs the
non-compile checks, batch 128 bf16 forward+backward at the stride-1 shapes, and the models.

Times are medians of CUDA-event-timed calls after two warm-up calls (which also compile the
Triton kernels); peak memory is ``torch.cuda.max_memory_allocated`` during one more call, above
what was allocated before it (operator) or in total (models). ``torch.backends.cudnn.benchmark``
is on for every method.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import awconv  # noqa: E402  (registers the awconv models with timm)
from awconv import AWConv2d  # noqa: E402

__all__ = ["HOW_TO_RUN", "main"]

MIB = 2**20
COMMAND = "PYTHONPATH=src python3 benchmarks/gpu.py"
DEFAULT_OUT = ROOT / "docs" / "performance-gpu.md"
# Included at the top of docs/performance-gpu.md, which a test checks.
HOW_TO_RUN = """\
## How to run it on a lent GPU machine

From the repository root of a checkout (the machine needs torch, timm and a CUDA GPU, no network):

```
PYTHONPATH=src python3 benchmarks/gpu.py           # checks + models + operator, < 9 min on an H100
PYTHONPATH=src python3 benchmarks/gpu.py --quick   # the headline numbers, ~3 min
```

It rewrites this file (`--out` writes elsewhere) with the device, the versions and every table;
a check that fails or a measurement that errors is recorded in the tables, not raised, so one
run always yields a document. `--budget-s` (default 420) bounds the run: a section that would
overrun it is cut short and marked. Without CUDA it refuses in one line;
`python benchmarks/gpu.py --device cpu --tiny` runs every code path at tiny sizes on a CPU (a
fast test does, so the script is known to work before a GPU runs it)."""


@dataclass(frozen=True)
class Shape:
    """A 3x3 convolution C -> C on an H x H input with stride s, padding 1."""

    channels: int
    size: int
    stride: int = 1

    @property
    def label(self) -> str:
        return f"{self.channels}@{self.size}" + (f"/{self.stride}" if self.stride != 1 else "")


# ResNet-50's bottleneck 3x3 convolutions: stride 1 in each stage, and each of stages 2-4's first.
RESNET50_SHAPES = (Shape(64, 56), Shape(128, 28), Shape(256, 14), Shape(512, 7))
RESNET50_STRIDED_SHAPES = (Shape(128, 56, 2), Shape(256, 28, 2), Shape(512, 14, 2))
TINY_SHAPES = (Shape(8, 8, 2),)
MODES = ("forward", "forward+backward")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Method:
    """A layer to time: cuDNN's plain conv (``generator`` None) or an AWConv2d."""

    name: str
    generator: str | None = None
    impl: str = "auto"
    rank: int = 1


METHODS = (
    Method("plain (cuDNN)"),
    *(Method(f"full {impl}", "full", impl) for impl in ("grouped", "bmm", "loop", "triton")),
    Method("lowrank1 auto", "lowrank"),
    Method("lowrank1 triton", "lowrank", "triton"),
)


@dataclass(frozen=True)
class ModelSpec:
    label: str
    name: str
    kwargs: dict = field(default_factory=dict)


def model_specs(family: str) -> tuple[ModelSpec, ...]:
    """ResNet-``family`` (``"50"``, ``"20_cifar"``...) and its AW variants (full and lowrank rank 1,
    impl auto and triton)."""
    return (
        ModelSpec(f"resnet{family}", f"resnet{family}"),
        *(
            ModelSpec(f"aw_resnet{family} {generator} {impl}", f"aw_resnet{family}", {**extra, "impl": impl})
            for generator, extra in (("full", {}), ("lowrank1", {"generator": "lowrank", "rank": 1}))
            for impl in ("auto", "triton")
        ),
    )


@dataclass
class Budget:
    """A wall-clock deadline shared by the sections."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


@dataclass
class Settings:
    """What a run measures: sizes, repeats and the device."""

    device: str
    shapes: tuple[Shape, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    modes: tuple[str, ...]
    methods: tuple[Method, ...]
    models: tuple[ModelSpec, ...]
    model_batch: int
    image_size: int
    check_pattern: str
    seconds_per_timing: float
    model_seconds: float
    timed_steps: int


def settings_for(args: argparse.Namespace) -> Settings:
    cuda = args.device == "cuda"
    methods = tuple(m for m in METHODS if cuda or m.impl != "triton")
    if args.tiny:
        return Settings(
            args.device, TINY_SHAPES, (2,), tuple(DTYPES), MODES, methods,
            tuple(s for s in model_specs("20_cifar") if cuda or s.kwargs.get("impl") != "triton"),
            2, 8, args.checks or "attention-given loop|fused lowrank auto", 0.0, 0.0, 1,
        )  # fmt: skip
    if args.quick:
        return Settings(
            args.device, RESNET50_SHAPES, (128,), ("bf16",), ("forward+backward",), methods,
            model_specs("50"), 128, 224, args.checks or r"^(?!compile)", 0.1, 2.0, 5,
        )  # fmt: skip
    return Settings(
        args.device, RESNET50_SHAPES + RESNET50_STRIDED_SHAPES, (32, 128), tuple(DTYPES), MODES, methods,
        model_specs("50"), 128, 224, args.checks or ".", 0.2, 3.0, 10,
    )  # fmt: skip


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], object], device: str, seconds: float, max_repeats: int = 10) -> float:
    """Median time of ``fn()`` in ms over up to ``max_repeats`` calls (at least one) within ``seconds``."""
    times: list[float] = []
    start = time.perf_counter()
    while not times or (len(times) < max_repeats and time.perf_counter() - start < seconds):
        if device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            tick = time.perf_counter()
            fn()
            times.append((time.perf_counter() - tick) * 1e3)
    return statistics.median(times)


def peak_bytes(fn: Callable[[], object], device: str, above_current: bool) -> int | None:
    """Peak CUDA memory during ``fn()``: above what was allocated before, or in total (None on the CPU)."""
    if device != "cuda":
        fn()
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated() - (before if above_current else 0)


def _autocast(device: str, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=DTYPES[dtype])


# --- 1. checks ---------------------------------------------------------------------------------


@dataclass
class CheckResult:
    name: str
    status: str  # "passed", "failed", "skipped", "not run"
    seconds: float
    message: str = ""


def run_checks(settings: Settings, budget: Budget) -> list[CheckResult]:
    """Every check of tests/device_checks.py for the device whose name matches the pattern."""
    from device_checks import CheckSkipped, checks

    pattern = re.compile(settings.check_pattern)
    results = []
    for check in checks(settings.device):
        if not pattern.search(check.name):
            continue
        if budget.left() <= 0:
            results.append(CheckResult(check.name, "not run", 0.0, "time budget spent"))
            continue
        start = time.perf_counter()
        try:
            check.run()
            status, message = "passed", ""
        except CheckSkipped as skipped:
            status, message = "skipped", str(skipped)
        except Exception as error:  # a failing check is a result, not the end of the run
            status, message = "failed", _one_line(error)
        results.append(CheckResult(check.name, status, time.perf_counter() - start, message))
        print(f"check {check.name}: {status} {message}", flush=True)
    return results


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ").replace("|", "/")
    return text[:300]


# --- 2. models ---------------------------------------------------------------------------------


@dataclass
class ModelResult:
    spec: ModelSpec
    images_per_s: float | None = None
    peak: int | None = None
    error: str = ""


def bench_model(spec: ModelSpec, settings: Settings) -> ModelResult:
    """Training throughput (SGD step, bf16 autocast, channels_last) and peak memory of one model."""
    device, batch = settings.device, settings.model_batch
    model = timm.create_model(spec.name, num_classes=1000, **spec.kwargs).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, settings.image_size, settings.image_size, device=device)
    x = x.to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(1 if device == "cpu" else 3):
        step()
    synchronize(device)
    peak = peak_bytes(step, device, above_current=False)
    ms = median_ms(step, device, settings.model_seconds, settings.timed_steps)
    return ModelResult(spec, batch / ms * 1e3, peak)


def run_models(settings: Settings, budget: Budget) -> list[ModelResult]:
    results = []
    for spec in settings.models:
        if budget.left() <= 0:
            results.append(ModelResult(spec, error="not run: time budget spent"))
            continue
        try:
            results.append(bench_model(spec, settings))
        except Exception as error:
            results.append(ModelResult(spec, error=_one_line(error)))
        finally:
            _free(settings.device)
        print(f"model {spec.label}: {results[-1]}", flush=True)
    return results


def _free(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()


# --- 3. operator -------------------------------------------------------------------------------


@dataclass
class Timing:
    ms: float | None = None
    peak: int | None = None
    error: str = ""


def _layer(method: Method, shape: Shape, device: str) -> nn.Module:
    c = shape.channels
    if method.generator is None:
        return nn.Conv2d(c, c, 3, shape.stride, 1, bias=False, device=device)
    layer = AWConv2d(
        c, c, 3, shape.stride, 1, bias=False, generator=method.generator, rank=method.rank, impl=method.impl
    )
    with torch.no_grad():  # a trained-looking, non-zero attention (the cost is the same)
        layer.generator.pointconv2.weight.normal_(0, 0.05)
    return layer.to(device)


def time_method(
    method: Method, shape: Shape, batch: int, dtype: str, mode: str, settings: Settings
) -> Timing:
    device = settings.device
    layer = _layer(method, shape, device)
    x = torch.randn(batch, shape.channels, shape.size, shape.size, device=device)
    x = x.to(memory_format=torch.channels_last)
    if mode == "forward":

        def call() -> object:
            with torch.no_grad(), _autocast(device, dtype):
                return layer(x)

    else:
        x.requires_grad_(True)
        with _autocast(device, dtype):
            grad_out = torch.randn_like(layer(x)).detach()
        inputs = [x, *layer.parameters()]

        def call() -> object:
            with _autocast(device, dtype):
                out = layer(x)
            return torch.autograd.grad(out, inputs, grad_out)

    for _ in range(2):  # warm-up: cuDNN plans, Triton compilation
        call()
    synchronize(device)
    peak = peak_bytes(call, device, above_current=True)
    return Timing(median_ms(call, device, settings.seconds_per_timing), peak)


@dataclass
class OperatorRow:
    shape: Shape
    batch: int
    dtype: str
    mode: str
    timings: dict[str, Timing] = field(default_factory=dict)


def run_operator(settings: Settings, budget: Budget) -> list[OperatorRow]:
    rows = []
    for dtype in settings.dtypes:
        for mode in settings.modes:
            for batch in settings.batches:
                for shape in settings.shapes:
                    row = OperatorRow(shape, batch, dtype, mode)
                    for method in settings.methods:
                        if budget.left() <= 0:
                            row.timings[method.name] = Timing(error="not run: time budget spent")
                            continue
                        try:
                            row.timings[method.name] = time_method(
                                method, shape, batch, dtype, mode, settings
                            )
                        except Exception as error:
                            row.timings[method.name] = Timing(error=_one_line(error))
                        finally:
                            _free(settings.device)
                    rows.append(row)
                    print(f"operator {dtype} {mode} batch {batch} {shape.label}: done", flush=True)
    return rows


# --- the document ------------------------------------------------------------------------------


def environment(device: str) -> dict[str, str]:
    """The device, its memory and compute capability, and the versions that produced the numbers."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    info["awconv"] = f"{awconv.__version__} (commit {_git_commit()})"
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        memory = f"{properties.total_memory / 2**30:.0f} GiB"
        info["device"] = f"{properties.name}, {memory}, sm_{properties.major}{properties.minor}"
        info["CUDA (torch built with)"] = str(torch.version.cuda)
        info["cuDNN"] = str(torch.backends.cudnn.version())
        info["driver"] = _nvidia_smi("driver_version")
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()}), smoke test only"
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return info


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _nvidia_smi(field_name: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field_name}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
    except OSError:
        return "unknown"


def _ms(timing: Timing, plain: Timing) -> str:
    if timing.ms is None:
        return timing.error
    if plain.ms is None or timing is plain:
        return f"{timing.ms:.3g}"
    return f"{timing.ms:.3g} ({timing.ms / plain.ms:.2f}x)"


def _mib(timing: Timing, plain: Timing) -> str:
    if timing.peak is None:
        return timing.error or "n/a"
    text = f"{timing.peak / MIB:.0f}"
    return text if timing is plain or not plain.peak else f"{text} ({timing.peak / plain.peak:.2f}x)"


def operator_tables(rows: Sequence[OperatorRow], methods: Sequence[Method]) -> list[str]:
    names = [m.name for m in methods]
    lines = []
    for dtype in dict.fromkeys(r.dtype for r in rows):
        for mode in dict.fromkeys(r.mode for r in rows):
            selected = [r for r in rows if r.dtype == dtype and r.mode == mode]
            if not selected:
                continue
            lines += [f"### {dtype}, {mode}: time in ms (ratio to plain)", ""]
            lines += ["| batch | shape | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
            for row in selected:
                plain = row.timings[names[0]]
                cells = [_ms(row.timings[name], plain) for name in names]
                lines.append(f"| {row.batch} | {row.shape.label} | " + " | ".join(cells) + " |")
            lines.append("")
            if all(t.peak is None for row in selected for t in row.timings.values()):
                continue  # memory is measured on CUDA only
            lines += [f"### {dtype}, {mode}: peak memory in MiB above the inputs (ratio to plain)", ""]
            lines += ["| batch | shape | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
            for row in selected:
                plain = row.timings[names[0]]
                cells = [_mib(row.timings[name], plain) for name in names]
                lines.append(f"| {row.batch} | {row.shape.label} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def model_table(results: Sequence[ModelResult], batch: int, image_size: int) -> list[str]:
    plain = results[0] if results else None
    lines = [
        f"Training step (SGD, momentum 0.9), batch {batch}, {image_size} px, bf16 autocast, channels_last.",
        "",
        "| model | images/s | share of the plain model's | peak memory (GiB) | memory / plain |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        if result.images_per_s is None:
            lines.append(f"| {result.spec.label} | {result.error} | | | |")
            continue
        share = f"{result.images_per_s / plain.images_per_s:.2f}" if plain and plain.images_per_s else ""
        memory = "n/a" if result.peak is None else f"{result.peak / 2**30:.2f}"
        ratio = f"{result.peak / plain.peak:.2f}" if result.peak and plain and plain.peak else ""
        lines.append(f"| {result.spec.label} | {result.images_per_s:.4g} | {share} | {memory} | {ratio} |")
    return [*lines, ""]


def targets(models: Sequence[ModelResult], rows: Sequence[OperatorRow]) -> list[str]:
    """Issue 16's targets for an H100, read off this run's numbers (the first model is the plain one)."""
    lines = []
    plain = models[0] if models and models[0].images_per_s else None
    for result in models[1:] if plain else ():
        if result.images_per_s is None or "full" not in result.spec.label:
            continue
        share = result.images_per_s / plain.images_per_s
        lines.append(
            f"- {result.spec.label}: {share:.2f} of {plain.spec.label}'s training throughput "
            f"(target >= 0.80: {'met' if share >= 0.8 else 'not met'})"
        )
        if result.peak and plain.peak:
            ratio = result.peak / plain.peak
            lines.append(
                f"- {result.spec.label}: peak training memory {ratio:.2f}x the plain model's (target <= 1.3: "
                f"{'met' if ratio <= 1.3 else 'not met'})"
            )
    for dtype, mode, batch in dict.fromkeys((r.dtype, r.mode, r.batch) for r in rows):
        selected = [r for r in rows if (r.dtype, r.mode, r.batch) == (dtype, mode, batch)]
        if mode != "forward+backward" or not all("full triton" in r.timings for r in selected):
            continue
        slower = [
            r.shape.label
            for r in selected
            if r.timings["full triton"].ms is None
            or any(
                r.timings[other].ms is not None and r.timings[other].ms <= r.timings["full triton"].ms
                for other in ("full grouped", "full bmm")
            )
        ]
        verdict = "met" if not slower else "not met at " + ", ".join(slower)
        lines.append(
            f"- full triton faster than full grouped and full bmm at every shape, {dtype} "
            f"forward+backward, batch {batch}: {verdict}"
        )
    return [*lines, ""] if lines else []


def check_table(results: Sequence[CheckResult]) -> list[str]:
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped", "not run")}
    lines = [
        ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
        "",
        "| check | result | s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.status}{': ' + r.message if r.message else ''} | {r.seconds:.1f} |" for r in results
    ]
    return [*lines, ""]


def render(
    settings: Settings,
    argv: Sequence[str],
    info: dict[str, str],
    checks: Sequence[CheckResult],
    models: Sequence[ModelResult],
    rows: Sequence[OperatorRow],
    seconds: float,
) -> str:
    lines = [
        "# Performance on a GPU",
        "",
        "Written by `benchmarks/gpu.py` (its docstring says what is measured and how). Ratios are "
        "taken only between numbers of the same run.",
        "",
        HOW_TO_RUN,
        "",
        "## This run",
        "",
        f"Command: `{' '.join([COMMAND, *argv])}`, {seconds / 60:.1f} min.",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        *(
            ["## Targets (issue 16, for an H100)", "", *targets(models, rows)]
            if targets(models, rows)
            else []
        ),
        "## Checks (tests/device_checks.py on this device, against float64)",
        "",
        *check_table(checks),
        "## Models",
        "",
        *model_table(models, settings.model_batch, settings.image_size),
        "## One 3x3 layer C -> C (padding 1) against cuDNN's plain convolution",
        "",
        "`full`: the faithful generator; `lowrank1`: rank 1; the path after the generator's name. fp32 "
        "runs with TF32 (matmul precision 'high', cuDNN's default); bf16 is autocast with float32 "
        "parameters. Peak memory is what one call allocates above its inputs and parameters.",
        "",
        *operator_tables(rows, settings.methods),
    ]
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="the headline numbers only (~3 min on an H100)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test of the code paths")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"the document (default {DEFAULT_OUT} on CUDA)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="stop measuring after this many seconds"
    )
    parser.add_argument("--checks", default=None, help="run only the checks whose names match this regex")
    parser.add_argument(
        "--skip", nargs="*", default=(), choices=("checks", "models", "operator"), help="sections not to run"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
            "smoke-test it with --device cpu --tiny",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and not args.tiny:
        print("benchmarks/gpu.py --device cpu runs only with --tiny (a smoke test)", file=sys.stderr)
        return 2
    settings = settings_for(args)
    budget = Budget(args.budget_s)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    try:
        checks = [] if "checks" in args.skip else run_checks(settings, budget)
        torch.set_float32_matmul_precision("high")  # the checks set and restore TF32; re-assert it
        models = [] if "models" in args.skip else run_models(settings, budget)
        rows = [] if "operator" in args.skip else run_operator(settings, budget)
    except Exception:
        traceback.print_exc()
        return 1
    seconds = time.perf_counter() - budget.start
    document = render(
        settings,
        sys.argv[1:] if argv is None else list(argv),
        environment(args.device),
        checks,
        models,
        rows,
        seconds,
    )
    out = args.out or (DEFAULT_OUT if args.device == "cuda" else None)
    if out is None:
        print(document)
    else:
        out.write_text(document)
        print(f"wrote {out} ({seconds / 60:.1f} min)")
    return 1 if any(c.status == "failed" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
