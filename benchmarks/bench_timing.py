"""Shared measuring helpers of the benchmarks: wall time, peak tensor memory, the machine.

Time: ``median_ms`` runs a callable once to warm up, then repeats it and takes the median wall
time (``time.perf_counter``). Memory: ``peak_memory_bytes`` runs a callable once under
``torch.profiler`` with ``profile_memory=True`` and replays the allocator's raw allocation and
free events in time order; the peak of the running sum is the most tensor memory the call held at
once above what was live before it (every tensor PyTorch's CPU allocator hands out: outputs,
intermediates, autograd buffers, gradients; not the Python heap or library code).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from importlib import metadata

import torch
from torch.profiler import ProfilerActivity, profile

from awconv.engine.machine import cpu_model

__all__ = ["machine_info", "median_ms", "peak_memory_bytes", "top_ops"]


def median_ms(
    fn: Callable[[], object], repeats: int, budget_s: float = float("inf"), warmup: bool = True
) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call.

    Args:
        fn: the work to time.
        repeats: the most timed calls.
        budget_s: fewer calls (at least 3, or ``repeats`` if smaller) when ``repeats`` calls of the
            warm-up call's length would take longer than this.
        warmup: make the warm-up call; False when the caller has just run ``fn`` (``repeats`` calls then).
    """
    count = repeats
    if warmup:
        start = time.perf_counter()
        fn()
        warmup_s = time.perf_counter() - start
        if budget_s < repeats * warmup_s:
            count = min(repeats, max(3, int(budget_s / max(warmup_s, 1e-9))))
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """The most tensor memory ``fn()`` holds at once, in bytes above what was live before the call."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def top_ops(fn: Callable[[], object], count: int = 6, warmup: bool = True) -> list[tuple[str, float, float]]:
    """The operators with the most self CPU time in one call of ``fn()``.

    Args:
        fn: the work to profile.
        count: how many operators.
        warmup: call ``fn`` once before the profiled call.

    Returns:
        ``(name, self CPU ms, share of the call's self CPU time in %)``, largest first.
    """
    if warmup:
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    averages = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in averages) or 1.0
    return [
        (e.key, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total) for e in averages[:count]
    ]


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_info() -> dict[str, str]:
    """CPU model, cores, torch threads, versions, date and the current load (``uptime``)."""
    versions = {}
    for package in ("torch", "timm", "awconv"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": versions["timm"],
        "awconv": versions["awconv"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": _load(),
    }
