"""Detection reports: COCOeval tables (boxes, masks, per class), statistics over seeds, drawn predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from awconv.engine.detection.metrics import METRIC_NAMES
from awconv.engine.statistics import format_mean_ci, mean_ci, paired_difference

__all__ = [
    "DetectionRun",
    "format_class_table",
    "format_map_table",
    "format_seed_summary",
    "write_detection_report",
]


class DetectionRun(NamedTuple):
    """One evaluated run: its detector name, training seed and COCO metrics (fractions, -1: none)."""

    model: str
    seed: int
    metrics: Mapping[str, float]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}" if value >= 0 else "n/a"


def format_map_table(results: Mapping[str, Mapping[str, float]], prefix: str = "") -> str:
    """A Markdown table, one row per run: COCOeval's twelve figures in percent (n/a: none).

    Args:
        results: run label -> metrics (``awconv.engine.detection.metrics.summarize_coco``).
        prefix: ``""`` for boxes, ``"mask_"`` for masks.
    """
    names = list(METRIC_NAMES.values())
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model, metrics in results.items():
        lines.append(f"| {model} | " + " | ".join(_percent(metrics[prefix + name]) for name in names) + " |")
    return "\n".join(lines)


def format_class_table(results: Mapping[str, Mapping[str, object]], prefix: str = "") -> str:
    """A Markdown table of AP per category (percent), one column per run; empty without per-class AP."""
    runs = {label: m[f"{prefix}AP_per_class"] for label, m in results.items() if f"{prefix}AP_per_class" in m}
    if not runs:
        return ""
    classes = list(dict.fromkeys(name for per_class in runs.values() for name in per_class))
    lines = ["| category | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for name in classes:
        cells = [_percent(per_class.get(name, -1.0)) for per_class in runs.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_seed_summary(runs: Sequence[DetectionRun]) -> str:
    """AP and AP50 per detector, mean ± 95% CI over seeds; then each detector minus the first, by seed.

    Returns an empty string when no detector has two or more runs.
    """
    models = list(dict.fromkeys(run.model for run in runs))
    by_model = {m: {run.seed: run.metrics for run in runs if run.model == m} for m in models}
    if max(len(seeds) for seeds in by_model.values()) < 2:
        return ""

    def cell(values: Sequence[float]) -> str:
        return format_mean_ci(*mean_ci([100 * v for v in values]), 1)

    lines = ["| model | seeds | AP | AP50 |", "|---|---|---|---|"]
    for model, seeds in by_model.items():
        ap, ap50 = [m["AP"] for m in seeds.values()], [m["AP50"] for m in seeds.values()]
        lines.append(f"| {model} | {', '.join(map(str, seeds))} | {cell(ap)} | {cell(ap50)} |")
    baseline = models[0]
    lines += [
        "",
        f"Paired by seed against {baseline} (AP points, mean ± 95% CI; wins / losses; paired t-test p):",
        "",
    ]
    lines += ["| model | AP difference | wins / losses | p |", "|---|---|---|---|"]
    for model in models[1:]:
        diff = paired_difference(
            {s: 100 * m["AP"] for s, m in by_model[model].items()},
            {s: 100 * m["AP"] for s, m in by_model[baseline].items()},
        )
        lines.append("| " + " | ".join([model, *diff.cells(1)]) + " |")
    return "\n".join(lines)


def write_detection_report(
    path: str | Path,
    results: Mapping[str, Mapping[str, float]],
    drawings: Mapping[str, Sequence[Path]],
    *,
    runs: Sequence[DetectionRun] = (),
    checkpoint: str = "best",
) -> Path:
    """Writes a Markdown report: COCOeval tables for boxes (and masks), AP per category, the
    summary over seeds and links to drawn predictions.

    Args:
        path: the report file.
        results: run label -> metrics.
        drawings: run label -> drawn prediction files.
        runs: the same runs with detector and seed, for ``format_seed_summary``.
        checkpoint: which checkpoint of each run was evaluated (``"best"`` or ``"last"``).
    """
    path = Path(path)
    summary = format_seed_summary(runs) if runs else ""
    lines = [
        "# Detection report",
        "",
        f"COCOeval on the validation set (percent), {checkpoint} checkpoint of each run: AP at IoU "
        "0.50:0.95, 0.50, 0.75 and for small, medium, large objects; AR at 1, 10, 100 detections per "
        "image and by size.",
        "",
        "## Boxes",
        "",
        format_map_table(results),
    ]
    masked = {label: metrics for label, metrics in results.items() if "mask_AP" in metrics}
    if masked:
        lines += ["", "## Masks", "", format_map_table(masked, "mask_")]
    for title, prefix, chosen in (
        ("Box AP per category", "", results),
        ("Mask AP per category", "mask_", masked),
    ):
        table = format_class_table(chosen, prefix)
        if table:
            lines += ["", f"## {title}", "", table]
    if summary:
        lines += ["", "## Over seeds", "", summary]
    for model, images in drawings.items():
        lines += ["", f"## Predictions of {model}", ""]
        lines += [f"![{image.stem}]({image.relative_to(path.parent)})" for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
