"""The comparison report: statistics over seeds, a table, plots, ``report.md`` and ``report.html``.

Input: one ``ModelResult`` per model with its per-seed runs (``metrics.json`` summaries and
``history.json`` rows). Top-1 is the validation accuracy of the last epoch; its interval is the
95% confidence interval of the mean over seeds from Student's t distribution. Pairs of models are
also compared seed by seed (``awconv.engine.statistics.paired_difference``): runs with the same
seed see the same data order and augmentation, so the per-seed difference removes that noise.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from awconv.engine.checkpoint import atomic_write
from awconv.engine.statistics import format_mean_ci, mean_ci, paired_difference

__all__ = ["ModelResult", "check_pairs", "format_paired_table", "format_table", "write_report"]


@dataclass
class ModelResult:
    """One model's runs and cost.

    Attributes:
        label: the model as named in the comparison (name and model arguments).
        params: parameters.
        gmacs: multiply-accumulates of one image, 1e9.
        images_per_second: measured eval throughput.
        train_images_per_second: measured training-step throughput (``measure_training_throughput``).
        runs: per seed, ``{"seed", "final_val_top1", "run_dir", ...}`` (``metrics.json``).
        histories: per seed, the ``history.json`` rows, in the order of ``runs``.
    """

    label: str
    params: int
    gmacs: float
    images_per_second: float
    train_images_per_second: float
    runs: list[dict] = field(default_factory=list)
    histories: list[list[dict]] = field(default_factory=list)

    @property
    def top1(self) -> list[float]:
        """Final validation top-1 (%) per seed."""
        return [100 * run["final_val_top1"] for run in self.runs]

    @property
    def top1_by_seed(self) -> dict[int, float]:
        """Final validation top-1 (%) keyed by seed."""
        return {run["seed"]: 100 * run["final_val_top1"] for run in self.runs}


def _rows(results: Sequence[ModelResult]) -> list[list[str]]:
    rows = []
    for result in results:
        mean, half = mean_ci(result.top1)
        rows.append(
            [
                result.label,
                format_mean_ci(mean, half, 2),
                str(len(result.runs)),
                f"{result.params / 1e6:.3f}",
                f"{result.gmacs:.4f}",
                f"{result.images_per_second:,.0f}",
                f"{result.train_images_per_second:,.0f}",
            ]
        )
    return rows


NOTE = (
    "Top-1: validation accuracy after the last epoch; ± the 95% confidence interval of the mean over seeds "
    "(t distribution). GMACs: one image. images/s: eval-mode forward passes; training images/s: training "
    "steps (forward, backward, SGD step, no loading) at the recipe's batch size; both measured when the "
    "report was written, one model after another, on {machine}."
)
HEADER = ["model", "top-1 % (mean ± 95% CI)", "seeds", "params (M)", "GMACs", "images/s", "training images/s"]


PAIRED_NOTE = (
    "Paired by seed: runs with the same seed share the data order and augmentation. Difference: "
    "model minus baseline in top-1 points, mean over seeds ± its 95% CI (t distribution); "
    "wins/losses: seeds where the model is higher/lower; p: two-sided paired t-test."
)
PAIRED_HEADER = ["model", "baseline", "difference (points)", "wins / losses of seeds", "p"]


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def format_table(results: Sequence[ModelResult]) -> str:
    """The comparison as a Markdown table."""
    return _markdown_table(HEADER, _rows(results))


def check_pairs(pairs: Sequence[Sequence[str]], labels: Sequence[str]) -> list[tuple[str, str]]:
    """``pairs`` as ``(model, baseline)`` tuples; each must name two different models of ``labels``.

    Raises:
        ValueError: naming the first bad pair.
    """
    for pair in pairs:
        if len(pair) != 2 or not set(pair) <= set(labels) or pair[0] == pair[1]:
            raise ValueError(
                f"pairs must name two different models of --models {list(labels)}, got {list(pair)}"
            )
    return [(model, baseline) for model, baseline in pairs]


def _paired_rows(results: Sequence[ModelResult], pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    by_label = {result.label: result for result in results}
    rows = []
    for treatment, control in pairs:
        diff = paired_difference(by_label[treatment].top1_by_seed, by_label[control].top1_by_seed)
        rows.append([treatment, control, *diff.cells(2)])
    return rows


def format_paired_table(results: Sequence[ModelResult], pairs: Sequence[tuple[str, str]]) -> str:
    """Per-seed differences ``(model, baseline)`` of ``pairs`` as a Markdown table."""
    return _markdown_table(PAIRED_HEADER, _paired_rows(results, pairs))


def write_report(
    results: Sequence[ModelResult],
    out_dir: str | Path,
    *,
    title: str,
    recipe: str,
    machine: str,
    pairs: Sequence[tuple[str, str]] = (),
) -> Path:
    """Writes ``report.md``, ``report.html`` and the plots into ``out_dir``; returns the Markdown path.

    Args:
        results: one entry per model.
        out_dir: the comparison's directory.
        title: the report's heading (data set and models).
        recipe: one line describing the training recipe, shown under the title and in the plots.
        machine: where the throughput columns were measured (``describe_machine``).
        pairs: ``(model, baseline)`` labels compared seed by seed; none: no paired section.
    """
    pairs = check_pairs(pairs, [result.label for result in results])
    out_dir = Path(out_dir)
    _plot_curves(results, out_dir / "val_top1_per_epoch.png", recipe)
    _plot_accuracy_vs_params(results, out_dir / "top1_vs_params.png", recipe)
    per_seed = [
        "| model | seed | final top-1 % | best top-1 % (epoch) | trained on | run |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for run in result.runs:
            machines = " + ".join(run.get("machines", [])) or "not recorded"
            per_seed.append(
                f"| {result.label} | {run['seed']} | {100 * run['final_val_top1']:.2f} | "
                f"{100 * run['best_val_top1']:.2f} ({run['best_epoch']}) | {machines} | {run['run_dir']} |"
            )
    markdown = "\n\n".join(
        [
            f"# {title}",
            f"Recipe: {recipe}",
            NOTE.format(machine=machine),
            format_table(results),
            *(["## Paired by seed", PAIRED_NOTE, format_paired_table(results, pairs)] if pairs else []),
            "![validation top-1 per epoch](val_top1_per_epoch.png)",
            "![top-1 vs parameters](top1_vs_params.png)",
            "## Runs",
            "\n".join(per_seed),
        ]
    )
    md_path = out_dir / "report.md"
    atomic_write(md_path, lambda file: file.write((markdown + "\n").encode()))
    atomic_write(
        out_dir / "report.html",
        lambda file: file.write(_html(results, title, recipe, machine, per_seed, pairs).encode()),
    )
    return md_path


def _html(
    results: Sequence[ModelResult],
    title: str,
    recipe: str,
    machine: str,
    per_seed: list[str],
    pairs: Sequence[tuple[str, str]],
) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    seed_rows = [[c.strip() for c in line.strip("|").split("|")] for line in per_seed[2:]]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Recipe: {html.escape(recipe)}</p>"
        f"<p>{html.escape(NOTE.format(machine=machine))}</p>"
        + table(HEADER, _rows(results))
        + (
            f"<h2>Paired by seed</h2><p>{html.escape(PAIRED_NOTE)}</p>"
            + table(PAIRED_HEADER, _paired_rows(results, pairs))
            if pairs
            else ""
        )
        + "<p><img src='val_top1_per_epoch.png' alt='validation top-1 per epoch'>"
        "<img src='top1_vs_params.png' alt='top-1 vs parameters'></p><h2>Runs</h2>"
        + table(["model", "seed", "final top-1 %", "best top-1 % (epoch)", "trained on", "run"], seed_rows)
        + "</body></html>\n"
    )


def _plot_curves(results: Sequence[ModelResult], path: Path, recipe: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for result in results:
        epochs = sorted({row["epoch"] for history in result.histories for row in history})
        means = [
            statistics.fmean(
                100 * row["val_top1"] for history in result.histories for row in history if row["epoch"] == e
            )
            for e in epochs
        ]
        ax.plot(epochs, means, "-o", label=f"{result.label} (mean of {len(result.histories)} seeds)")
    ax.set(
        xlabel="epoch",
        ylabel="validation top-1 accuracy (%)",
        title=f"Validation accuracy per epoch\n{recipe}",
    )
    ax.title.set_fontsize(9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_accuracy_vs_params(results: Sequence[ModelResult], path: Path, recipe: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    markers = "osD^vP*Xh<>p"
    for index, result in enumerate(results):  # a legend, not annotations: models of equal size overlap
        mean, half = mean_ci(result.top1)
        ax.errorbar(
            result.params / 1e6,
            mean,
            yerr=0 if math.isnan(half) else half,
            fmt=markers[index % len(markers)],
            capsize=4,
            label=result.label,
        )
    ax.legend(fontsize=7, loc="best")
    ax.set(xlabel="parameters (millions)", ylabel="final validation top-1 (%), mean ± 95% CI")
    ax.set_title(f"Accuracy vs parameters\n{recipe}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
