"""Smoke tests of benchmarks/bench_compile.py and bench_channels_last.py on tiny cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_channels_last import bench_layouts, format_layout_table
from bench_compile import CompileResult, bench_compile, format_compile_table


def test_channels_last_benchmark_times_every_method_in_both_layouts():
    result = bench_layouts(channels=4, size=6, batch=2, repeats=1)
    assert set(result.ms) == {
        (m, layout) for m in ("plain", "AWConv2d", "loop") for layout in ("NCHW", "channels_last")
    }
    assert all(ms > 0 for ms in result.ms.values())
    table = format_layout_table([result])
    assert "| 4@6 | 2 |" in table and table.count("\n") == 2


def test_compile_table_reports_the_ratio():
    table = format_compile_table([CompileResult("aw_resnet20_cifar", 32, 200.0, 150.0, 40.0, 2)])
    assert "| aw_resnet20_cifar | 32 | 200.0 | 150.0 | 0.75 | 40 | 2 |" in table


@pytest.mark.slow
def test_compile_benchmark_on_a_tiny_model():
    result = bench_compile("test_resnet", batch=4, repeats=1, image_size=16)
    assert result.eager_ms > 0 and result.compiled_ms > 0 and result.graphs >= 1
