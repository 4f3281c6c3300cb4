"""Smoke tests of benchmarks/: the smallest case of each benchmark on tiny shapes, and the ODConv peer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_cli import format_table as format_cli_table
from bench_cli import median_seconds
from bench_levers import LeverResult, format_levers_table
from bench_models import bench_model, format_model_table
from bench_operator import (
    METHODS,
    MODES,
    Shape,
    bench_shape,
    format_memory_table,
    format_time_table,
    profile_layer,
)
from bench_peers import CondConvLayer, ODConv2d
from bench_timing import median_ms, peak_memory_bytes
from run import _document


def test_odconv_matches_a_per_sample_float64_computation():
    torch.manual_seed(0)
    layer = ODConv2d(4, 6, 3, stride=2, padding=1, num_kernels=3).double()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    trunk = F.relu(x.mean(dim=(2, 3)) @ layer.fc.weight.T + layer.fc.bias)

    def head(fc: torch.nn.Linear) -> torch.Tensor:
        return trunk @ fc.weight.T + fc.bias

    channel, filter_ = torch.sigmoid(head(layer.channel_fc)), torch.sigmoid(head(layer.filter_fc))
    spatial, kernel = (
        torch.sigmoid(head(layer.spatial_fc)).view(2, 3, 3),
        torch.softmax(head(layer.kernel_fc), 1),
    )
    expected = []
    for n in range(2):
        weight = sum(kernel[n, k] * layer.weight[k] for k in range(3))
        weight = weight * spatial[n] * channel[n].view(1, 4, 1, 1) * filter_[n].view(6, 1, 1, 1)
        expected.append(F.conv2d(x[n : n + 1], weight, stride=2, padding=1))
    torch.testing.assert_close(layer(x), torch.cat(expected), rtol=1e-10, atol=1e-10)


def test_condconv_layer_matches_a_per_sample_computation():
    torch.manual_seed(0)
    layer = CondConvLayer(4, 6, 3, stride=1, padding=1, num_experts=4).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    routing = torch.sigmoid(layer.routing_fn(x.mean(dim=(2, 3))))
    weights = (routing @ layer.conv.weight).view(2, 6, 4, 3, 3)
    expected = torch.cat([F.conv2d(x[n : n + 1], weights[n], padding=1) for n in range(2)])
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_timing_helpers():
    assert median_ms(lambda: None, repeats=2) >= 0
    assert peak_memory_bytes(lambda: torch.empty(1000)) >= 4000


@pytest.fixture(scope="module")
def operator_results():
    torch.manual_seed(0)
    return [bench_shape(Shape(4, 6), 2, mode, repeats=1, budget_s=0.0) for mode in MODES]


def test_operator_benchmark_measures_every_method(operator_results):
    for result in operator_results:
        assert set(result.ms) == set(METHODS) == set(result.peak_bytes)
        assert all(ms > 0 for ms in result.ms.values()) and result.floor_ms > 0 and result.head_ms > 0
        assert result.attention_bytes == 2 * 4 * 4 * 9 * 4
    assert "| 2 | 4@6 |" in format_time_table(operator_results)
    assert "aw full / (plain+floor+head)" in format_time_table(operator_results)
    assert "| 2 | 4@6 |" in format_memory_table(operator_results)
    assert profile_layer(Shape(4, 6, 2), 2, "forward+backward", count=3)


def test_model_benchmark_and_document(operator_results):
    models = [bench_model((name, {}), 2, 1, 1, image_size=32) for name in ("resnet18", "aw_resnet18")]
    assert all(r.infer_ips > 0 and r.train_ips > 0 and r.train_peak > 0 for r in models)
    assert "(1.00×)" in format_model_table(models, baseline="resnet18")
    keys = ("cpu", "cores", "torch threads", "allocator", "python", "torch", "timm", "awconv", "date", "load")
    info = dict.fromkeys(keys, "x")
    levers = format_levers_table(
        [
            LeverResult("baseline", 10.0, 5.0),
            LeverResult("bf16 autocast", 20.0, 4.0),
            LeverResult("x", None, None, "E"),
        ]
    )
    assert "| bf16 autocast | 20.00 | 4.00 | 0.20 | 0.80× |" in levers and "| x | failed: E |" in levers
    profiles = [("layer", [("aten::mm", 1.0, 50.0)])]
    text = _document(True, info, info, {}, 1.0, operator_results, models, profiles, levers)
    assert "## Targets (issue #6)" in text and "not measured in this run" in text
    assert "## Levers, one at a time" in text and "## Code levers measured over issue #6" in text


def test_cli_benchmark_times_a_process_and_prints_its_row():
    seconds = median_seconds(["-c", "pass"], repeats=1)
    assert 0 < seconds < 60
    assert format_cli_table([("awconv --help", 0.5)]).splitlines()[-1] == "| `awconv --help` | 0.50 |"


def test_cifar_benchmark_tables_and_doc_section(tmp_path):
    from bench_cifar import (
        CONV_ALONE,
        SECTION_BEGIN,
        SECTION_END,
        CifarLayer,
        bench_layers,
        doc_section,
        format_layer_table,
        write_doc_section,
    )

    layer = CifarLayer(4, 8, 6, 2)
    times = bench_layers(layer, 2, ("auto", "loop"), repeats=1)
    assert set(times) == {"plain", CONV_ALONE, "auto", "loop"} and all(ms > 0 for ms in times.values())
    table = format_layer_table([(layer, 2, times)], ("auto", "loop"))
    assert "4->8@6/2" in table and f"({times['loop'] / times['plain']:.2f}×)" in table
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nkept\n")
    write_doc_section(doc_section("first"), doc)
    write_doc_section(doc_section("second"), doc)
    text = doc.read_text()
    assert text.count(SECTION_BEGIN) == 1 and "second" in text and "first" not in text
    assert text.index("kept") < text.index(SECTION_BEGIN) < text.index(SECTION_END)
