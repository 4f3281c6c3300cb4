"""benchmarks/gpu.py: its CPU smoke test runs every code path; without CUDA it refuses in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu  # noqa: E402


def test_tiny_cpu_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "performance-gpu.md"
    assert gpu.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    assert gpu.HOW_TO_RUN in text
    assert "2 passed, 0 failed, 0 skipped, 0 not run." in text
    methods = [m.name for m in gpu.METHODS if m.impl != "triton"]
    for dtype in gpu.DTYPES:
        for mode in gpu.MODES:
            header, row = _table(text, f"### {dtype}, {mode}: time in ms (ratio to plain)")
            assert header == ["batch", "shape", *methods]
            assert row[:2] == ["2", "8@8/2"] and all(_number(cell) > 0 for cell in row[2:]), row
    models = [
        line for line in text.splitlines() if line.startswith("| resnet20_cifar") or line.startswith("| aw_")
    ]
    assert len(models) == 3 and all(_number(line.split("|")[2]) > 0 for line in models), models
    assert "- aw_resnet20_cifar full auto: " in text  # the targets section reads the model table


def _table(text: str, title: str) -> tuple[list[str], list[str]]:
    """The header and the first row of the markdown table under ``title``."""
    lines = text.split(title, 1)[1].strip().splitlines()
    return _cells(lines[0]), _cells(lines[2])


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def _number(cell: str) -> float:
    return float(cell.split()[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_without_cuda(capsys) -> None:
    assert gpu.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("benchmarks/gpu.py needs a CUDA GPU")


def test_document_says_how_to_run() -> None:
    assert gpu.HOW_TO_RUN in (ROOT / "docs" / "performance-gpu.md").read_text()
