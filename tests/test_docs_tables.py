"""The generated tables in docs/ are what their scripts write today.

Regenerating a whole table takes minutes on a CPU (slow set); the fast set checks the parts that are
computed from the models without counting (method.md's note on the low-rank product) and that the
counter sees what the notes say it counts.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import method_table
import models_table

from awconv import AWConv2d


def _assert_same(expected: str, actual: str, doc: Path, command: str) -> None:
    if expected != actual:
        diff = difflib.unified_diff(
            actual.splitlines(), expected.splitlines(), str(doc), "regenerated", n=0, lineterm=""
        )
        pytest.fail(f"{doc.name} is stale; run `{command}`:\n" + "\n".join(list(diff)[:40]))


def test_method_note_on_the_lowrank_product_is_current():
    assert method_table.explanation() in method_table.DOC.read_text()


def test_lowrank_product_macs_sums_every_aw_layer():
    # aw_resnet20_cifar: AW on both 3x3 convs of 9 basic blocks; stage k has 16 * 2**k channels, and
    # the first block of stages 2 and 3 takes the previous stage's width in its first conv.
    widths = [(16, 16)] * 6 + [(16, 32)] + [(32, 32)] * 5 + [(32, 64)] + [(64, 64)] * 5
    expected = sum(3 * c2 * c1 * 9 for c1, c2 in widths)
    assert method_table.lowrank_product_macs("aw_resnet20_cifar", rank=3) == expected


@pytest.mark.parametrize(("generator", "rank", "pool"), [("lowrank", 1, "kernel"), ("lowrank", 3, "global")])
def test_flop_counter_counts_the_lowrank_generator_and_its_product(generator, rank, pool):
    n, c1, c2, size = 2, 32, 24, 6
    layer = AWConv2d(c1, c2, 3, padding=1, generator=generator, rank=rank, pool=pool, reduction=4).eval()
    taps = 9 if pool == "kernel" else 1
    hidden = layer.generator.hidden
    conv = n * c2 * c1 * 9 * size * size
    pointconv1 = n * taps * c1 * hidden
    heads = n * taps * hidden * (c2 * rank + rank * c1)
    product = n * taps * c2 * rank * c1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(torch.randn(n, c1, size, size))
    assert counter.get_total_flops() // 2 == conv + pointconv1 + heads + product


@pytest.mark.slow
def test_method_cost_table_is_current():
    text = method_table.DOC.read_text()
    _assert_same(
        method_table.with_table(text, method_table.build_table()),
        text,
        method_table.DOC,
        "python benchmarks/method_table.py",
    )


@pytest.mark.slow
def test_models_doc_is_current():
    _assert_same(models_table.build(), models_table.DOC.read_text(), models_table.DOC, models_table.COMMAND)


def _options(command: str) -> dict[str, str]:
    """``--flag value`` pairs of a command line (a flag without a value maps to "")."""
    tokens, options = command.split(), {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            options[token] = "" if following.startswith("--") else following
    return options


def test_training_md_demo_recipe_is_what_make_demo_runs():
    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text().replace("\\\n", " ")
    demo = next(line for line in makefile.splitlines() if "awconv compare" in line and "runs/demo" in line)
    row = next(
        line for line in (root / "docs" / "training.md").read_text().splitlines() if "`make demo`" in line
    )
    recipe = row.split("|")[3].strip().strip("`")
    expected = _options(demo)
    for flag, value in _options(recipe).items():
        assert expected.get(flag) == value, (
            f"training.md's demo row has {flag} {value}; make demo runs {expected}"
        )
