"""Detection reports: COCO mAP tables, statistics over seeds and predictions drawn into PNG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.io import ImageReadMode, decode_image
from torchvision.utils import draw_bounding_boxes

from awconv.engine.detection.module import METRIC_NAMES
from awconv.engine.statistics import format_mean_ci, mean_ci, paired_difference

__all__ = [
    "DetectionRun",
    "draw_predictions",
    "format_map_table",
    "format_seed_summary",
    "predict_images",
    "write_detection_report",
]


class DetectionRun(NamedTuple):
    """One evaluated run: its detector name, training seed and COCO metrics (fractions, -1: none)."""

    model: str
    seed: int
    metrics: Mapping[str, float]


def format_map_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table, one row per model: AP, AP50, AP75, APs, APm, APl in percent (n/a: none)."""
    names = list(METRIC_NAMES.values())
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model, metrics in results.items():
        cells = [f"{100 * metrics[name]:.1f}" if metrics[name] >= 0 else "n/a" for name in names]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
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


def draw_predictions(
    image: Tensor, prediction: Mapping[str, Tensor], categories: Mapping[int, str], score_thresh: float = 0.5
) -> Tensor:
    """Draws boxes with ``name score`` labels.

    Args:
        image: (3, H, W) float in [0, 1] or uint8.
        prediction: ``boxes`` (K, 4) XYXY, ``labels`` (K,), ``scores`` (K,).
        categories: label id -> name.
        score_thresh: boxes scoring below are not drawn.

    Returns:
        (3, H, W) uint8.
    """
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).to(torch.uint8)
    keep = prediction["scores"] >= score_thresh
    labels = [
        f"{categories.get(int(label), str(int(label)))} {float(score):.2f}"
        for label, score in zip(prediction["labels"][keep], prediction["scores"][keep], strict=True)
    ]
    return draw_bounding_boxes(
        image, prediction["boxes"][keep].detach().float(), labels, colors="red", width=2
    )


@torch.no_grad()
def predict_images(
    model: nn.Module,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    categories: Mapping[int, str],
    score_thresh: float = 0.5,
) -> list[Path]:
    """Runs a detector in eval mode on image files and writes ``<stem>_pred.png`` files; returns them."""
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        image = decode_image(str(path), mode=ImageReadMode.RGB)
        device = next(model.parameters()).device
        prediction = {k: v.cpu() for k, v in model([image.to(device).float() / 255])[0].items()}
        drawn = draw_predictions(image, prediction, categories, score_thresh)
        target = out_dir / f"{path.stem}_pred.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(target)
        written.append(target)
    return written


def write_detection_report(
    path: str | Path,
    results: Mapping[str, Mapping[str, float]],
    drawings: Mapping[str, Sequence[Path]],
    *,
    runs: Sequence[DetectionRun] = (),
    checkpoint: str = "best",
) -> Path:
    """Writes a Markdown report: the mAP table, the summary over seeds and links to drawn predictions.

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
        f"COCO box mAP on the validation set (percent), {checkpoint} checkpoint of each run.",
        "",
        format_map_table(results),
    ]
    if summary:
        lines += ["", "## Over seeds", "", summary]
    for model, images in drawings.items():
        lines += ["", f"## Predictions of {model}", ""]
        lines += [f"![{image.stem}]({image.relative_to(path.parent)})" for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
