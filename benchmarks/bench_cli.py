"""Command-line start-up: how long ``awconv --help`` and ``awconv COMMAND --help`` take.

Usage: ``python benchmarks/bench_cli.py [--repeats 5]`` prints one line per command line: the
median wall time of a fresh ``python -m awconv ... --help`` process, and for scale that of
``python -c "import torch"`` (which the help no longer needs) and of ``python -c pass``. The help
imports only the standard library (``tests/cli/test_cli_base_install.py`` checks that), so its time
is the interpreter's start-up plus argparse.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["COMMAND_LINES", "format_table", "median_seconds"]

COMMAND_LINES: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("train", "--help"),
    ("eval", "--help"),
    ("compare", "--help"),
    ("profile", "--help"),
    ("detect", "train", "--help"),
    ("make-shapes", "--help"),
)


def median_seconds(argv: Sequence[str], repeats: int) -> float:
    """Median wall time of ``repeats`` fresh runs of ``python argv``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL, env=os.environ)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def format_table(rows: Sequence[tuple[str, float]]) -> str:
    """Markdown table of ``(command line, seconds)`` rows."""
    lines = ["| command line | median wall time (s) |", "|---|---|"]
    lines += [f"| `{command}` | {seconds:.2f} |" for command, seconds in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command line")
    args = parser.parse_args()
    rows = [("python -c pass", median_seconds(["-c", "pass"], args.repeats))]
    for command in COMMAND_LINES:
        rows.append(
            (
                f"python -m awconv {' '.join(command)}",
                median_seconds(["-m", "awconv", *command], args.repeats),
            )
        )
    rows.append(("python -c 'import torch'", median_seconds(["-c", "import torch"], args.repeats)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}, Python "
        f"{platform.python_version()}, median of {args.repeats} fresh processes"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
