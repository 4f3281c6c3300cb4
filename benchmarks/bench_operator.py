"""Times every aw_conv2d path against plain F.conv2d at the 3x3 conv shapes of ResNet-50.

Usage: python benchmarks/bench_operator.py [--batch-sizes 8] [--repeats 10] [--threads N]
Prints a markdown table: forward time per path (median of repeats after warm-up), its ratio to
the plain convolution, and the path ``impl="auto"`` picks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from awconv.conv_paths import choose_impl
from awconv.functional import aw_conv2d

# (channels, spatial size) of the bottleneck 3x3 convs of ResNet-50's four stages.
RESNET50_SHAPES = ((64, 56), (128, 28), (256, 14), (512, 7))
PATHS = ("grouped", "bmm", "loop")


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, forward only, float32, ms")
    print("| N | C | H=W | plain conv | " + " | ".join(PATHS) + " | fastest | auto picks |")
    print("|---|---|---|---|" + "---|" * (len(PATHS) + 2))
    with torch.inference_mode():
        for batch in args.batch_sizes:
            for channels, size in RESNET50_SHAPES:
                x = torch.randn(batch, channels, size, size)
                weight = torch.randn(channels, channels, 3, 3)
                attention = torch.randn(batch, channels, channels, 3, 3)
                plain = median_time(lambda: F.conv2d(x, weight, padding=1), args.repeats)  # noqa: B023
                times = {
                    impl: median_time(
                        lambda impl=impl: aw_conv2d(x, weight, attention, padding=1, impl=impl),  # noqa: B023
                        args.repeats,
                    )
                    for impl in PATHS
                }
                cells = " | ".join(f"{times[impl]:.2f} ({times[impl] / plain:.1f}x)" for impl in PATHS)
                fastest = min(times, key=times.get)
                print(
                    f"| {batch} | {channels} | {size} | {plain:.2f} | {cells} | {fastest} "
                    f"| {choose_impl(batch, size * size)} |"
                )


if __name__ == "__main__":
    main()
