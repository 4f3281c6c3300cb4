"""The inspection report: tables, figures, ``report.md``, ``report.html`` and ``statistics.json``.

``write_inspection_report(result, out_dir, title=..., configuration=...)`` turns the statistics of
``attention_statistics`` into a document for people: what was inspected, a short summary, one
table per aspect (modulation, variation, rank) with every AW layer, the figures of
``awconv.engine.inspection.plots`` and the definitions needed to read them.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

from awconv.engine.checkpoint import atomic_write
from awconv.engine.inspection.layer_statistics import SATURATION_MARGIN, InspectionResult, LayerStatistics
from awconv.engine.inspection.plots import (
    plot_attention_images,
    plot_kernel_distances,
    plot_layer_profile,
    plot_modulation_histograms,
    plot_spectra,
)

__all__ = ["DEFINITIONS", "write_inspection_report"]

DEFINITIONS = (
    "A is the attention of one image (C2 x C1/g x kh x kw, the weight's shape); the layer convolves "
    "with (1 + A) * W. Statistics run over every weight position and inspected image.",
    "**image-dependent share**: the share of mean(A^2) that changes from image to image (the rest "
    "is a fixed reweighting that could be folded into W once and for all).",
    "**class share** (eta^2): the share of that image-to-image variance explained by the class; "
    "'chance' is its expected value when the class has no effect, (classes - 1) / (images - 1).",
    "**not common to output channels / taps**: the share of the image-to-image variance that "
    "differs between the output channels (taps) of one input channel and tap (output and input "
    "channel); 0 means every output channel (tap) is recalibrated alike, which an attention on the "
    "input activations could also do. In brackets the value if the channels (taps) varied "
    "independently of each other, 1 - 1/C2 (1 - 1/(kh kw)): lower values mean they move together.",
    "**kernel distance**: ||(1 + A_n) * W - W||_F / ||W||_F, how far an image's kernel moves from "
    "W; **spread**: the RMS over images of ||(A_n - mean A) * W||_F / ||W||_F, how far the per-image "
    "kernels lie from their mean.",
    "**effective rank over images**: exp(entropy) of the variance shares of the principal "
    "directions of the centred attention over the spectrum's images; the logits of the `full` "
    "generator are affine in its d x P hidden values, so few directions mean a narrow Pointconv1 "
    "would do.",
    "**rank-R energy**: the share of ||A_n[:, :, tap]||^2 kept by the best rank-R approximation of "
    "each image's C2 x C1/g matrix per tap, for A and for its image-dependent part A - mean A: near "
    "100% at R means the `lowrank` generator with rank R could express it (exactly for the logits; "
    "for the attention itself while the gate is close to linear, |A| well below 1). In brackets the "
    "same for a matrix of independent normal values of that shape: what no structure would give.",
)


def _percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _modulation_rows(layers: Sequence[LayerStatistics]) -> list[list[str]]:
    rows = []
    for s in layers:
        saturated = (
            "n/a (no gate)"
            if s.saturated_low is None
            else f"{_percent(s.saturated_low, 2)} / {_percent(s.saturated_high, 2)}"
        )
        distances = s.kernel_distances
        rows.append(
            [
                s.name,
                " x ".join(map(str, s.shape)),
                f"{s.modulation_mean:.3f} ± {s.modulation_std:.3f}",
                f"{s.modulation_min:.3f} to {s.modulation_max:.3f}",
                saturated,
                f"{100 * distances.mean():.2f} ({100 * distances.max():.2f})" if distances.size else "n/a",
            ]
        )
    return rows


MODULATION_HEADER = [
    "layer",
    "C2 x C1/g x kh x kw",
    "1 + A: mean ± std",
    "1 + A: range",
    f"saturated low / high (%, within {SATURATION_MARGIN})",
    "kernel distance % (max)",
]


def _variation_rows(layers: Sequence[LayerStatistics]) -> list[list[str]]:
    return [
        [
            s.name,
            f"{s.static_rms:.4f}",
            f"{s.image_std:.4f}",
            _percent(s.image_share),
            f"{_percent(s.class_share)} ({_percent(s.class_share_chance)})",
            f"{_percent(s.output_channel_share)} ({100 * (1 - 1 / s.shape[0]):.1f})",
            f"{_percent(s.input_channel_share)} ({100 * (1 - 1 / s.shape[1]):.1f})",
            f"{_percent(s.tap_share)} ({100 * (1 - 1 / s.pooled_taps):.1f})",
            f"{100 * s.kernel_spread:.2f}",
        ]
        for s in layers
    ]


VARIATION_HEADER = [
    "layer",
    "RMS of mean A",
    "RMS std of A over images",
    "image-dependent share %",
    "class share % (chance)",
    "not common to output channels % (uncorrelated)",
    "to input channels % (uncorrelated)",
    "to taps % (uncorrelated)",
    "kernel spread %",
]


def _rank_rows(layers: Sequence[LayerStatistics]) -> list[list[str]]:
    return [
        [
            s.name,
            f"{s.generator}" + (f" rank {s.rank}" if s.generator == "lowrank" else ""),
            f"{s.hidden} x {s.pooled_taps} = {s.hidden * s.pooled_taps}",
            f"{s.effective_rank:.1f}",
            f"{s.directions_90} / {s.directions_99}",
            f"{100 * s.matrix_energy[1]:.1f} / {100 * s.matrix_energy[4]:.1f} "
            f"({100 * s.matrix_energy_gaussian[1]:.1f} / {100 * s.matrix_energy_gaussian[4]:.1f})",
            f"{s.matrix_effective_rank:.1f} of {min(s.shape[:2])}",
            f"{100 * s.deviation_energy[1]:.1f} / {100 * s.deviation_energy[4]:.1f}",
            f"{s.deviation_effective_rank:.1f}",
        ]
        for s in layers
    ]


RANK_HEADER = [
    "layer",
    "generator",
    "hidden d x P",
    "effective rank over images",
    "directions for 90% / 99%",
    "A: rank-1 / rank-4 energy % (Gaussian)",
    "A: effective rank per image and tap",
    "A - mean A: rank-1 / rank-4 energy %",
    "A - mean A: effective rank",
]


def _span(values: Sequence[float | None], scale: float = 100, digits: int = 1) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    low, high = min(known) * scale, max(known) * scale
    return (
        f"{low:.{digits}f}"
        if f"{low:.{digits}f}" == f"{high:.{digits}f}"
        else f"{low:.{digits}f}–{high:.{digits}f}"
    )


def _summary(result: InspectionResult) -> list[str]:
    layers = result.layers
    chance = _span([s.class_share_chance for s in layers])
    return [
        f"{len(layers)} AW layers, {result.images} images"
        + ("" if result.top1 is None else f", top-1 on them {100 * result.top1:.2f}%")
        + ".",
        f"The modulation 1 + A has a standard deviation of {_span([s.modulation_std for s in layers], 1, 3)} "
        f"around means of {_span([s.modulation_mean for s in layers], 1, 3)}; each image's kernel moves "
        f"{_span([float(s.kernel_distances.mean()) for s in layers], 100, 2)}% from W on average.",
        f"The image-dependent share of the attention is {_span([s.image_share for s in layers])}%; the class "
        f"explains {_span([s.class_share for s in layers])}% of the image-to-image variation (chance "
        f"{chance}%).",
        f"Of that variation, {_span([s.output_channel_share for s in layers])}% is not common to the output "
        f"channels (uncorrelated channels: {_span([1 - 1 / s.shape[0] for s in layers])}%) and "
        f"{_span([s.tap_share for s in layers])}% not common to the taps (uncorrelated taps: "
        f"{_span([1 - 1 / s.pooled_taps for s in layers])}%).",
        f"Over images the attention uses an effective rank of {_span([s.effective_rank for s in layers], 1)} "
        f"directions; per image and tap a rank-1 matrix keeps "
        f"{_span([s.matrix_energy[1] for s in layers])}% of the attention's energy and rank 4 "
        f"{_span([s.matrix_energy[4] for s in layers])}% (unstructured Gaussian matrices: "
        f"{_span([s.matrix_energy_gaussian[1] for s in layers])}% and "
        f"{_span([s.matrix_energy_gaussian[4] for s in layers])}%; of its image-dependent part: "
        f"{_span([s.deviation_energy[1] for s in layers])}% and "
        f"{_span([s.deviation_energy[4] for s in layers])}%).",
    ]


class _Document:
    """Headings, paragraphs, lists, tables and images, rendered as Markdown and as HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("image", path, alt))

    def markdown(self) -> str:
        parts = []
        for kind, *args in self.blocks:
            if kind == "heading":
                parts.append("#" * args[0] + " " + args[1])
            elif kind == "paragraph":
                parts.append(args[0])
            elif kind == "bullets":
                parts.append("\n".join(f"- {item}" for item in args[0]))
            elif kind == "table":
                header, rows = args
                lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                parts.append("\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]))
            else:
                parts.append(f"![{args[1]}]({args[0]})")
        return "\n\n".join(parts) + "\n"

    @staticmethod
    def _inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"\[(.+?)\]\((.+?)\)", r"<a href='\2'>\1</a>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    def html(self, title: str) -> str:
        parts = []
        for kind, *args in self.blocks:
            if kind == "heading":
                parts.append(f"<h{args[0]}>{self._inline(args[1])}</h{args[0]}>")
            elif kind == "paragraph":
                parts.append(f"<p>{self._inline(args[0])}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{self._inline(i)}</li>" for i in args[0]) + "</ul>")
            elif kind == "table":
                header, rows = args
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                parts.append(f"<p><img src='{html.escape(args[0])}' alt='{html.escape(args[1])}'></p>")
        style = (
            "body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
            "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 6px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
        )


def write_inspection_report(
    result: InspectionResult,
    out_dir: str | Path,
    *,
    title: str,
    configuration: dict[str, str],
    classes: Sequence[str] | None = None,
) -> Path:
    """Writes ``report.md``, ``report.html``, ``statistics.json`` and the figures; returns the Markdown path.

    Args:
        result: from ``attention_statistics``.
        out_dir: the report's folder (created).
        title: the heading, e.g. the model and data set.
        configuration: what was inspected (model, weights, data, ...), shown as a table and, in
            short, in every figure's title.
        classes: class names, index = label, for the drawn images.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = result.layers
    figure_title = ", ".join(
        f"{k} {v}" for k, v in configuration.items() if k in ("model", "data", "weights")
    )
    figure_title += f", {result.images} images"
    plot_modulation_histograms(layers, out_dir / "modulation_histograms.png", title=figure_title)
    plot_layer_profile(layers, out_dir / "layer_profile.png", title=figure_title)
    plot_spectra(layers, out_dir / "spectra.png", title=figure_title)
    plot_kernel_distances(layers, out_dir / "kernel_distances.png", title=figure_title)
    drawn = []
    for stats in layers:
        if len(stats.drawn):
            path = f"attention/{stats.name}.png"
            plot_attention_images(stats, out_dir / path, title=figure_title, classes=classes)
            drawn.append((stats.name, path))

    doc = _Document()
    doc.heading(1, title)
    doc.table(["", ""], [[k, str(v)] for k, v in configuration.items()])
    doc.heading(2, "Summary")
    doc.bullets(_summary(result))
    doc.heading(2, "Modulation and kernels")
    doc.table(MODULATION_HEADER, _modulation_rows(layers))
    doc.image("modulation_histograms.png", "distribution of the modulation 1 + A per layer")
    doc.image("kernel_distances.png", "distance of the modulated kernels from W")
    doc.heading(2, "Variation between images, classes, channels and taps")
    doc.table(VARIATION_HEADER, _variation_rows(layers))
    doc.image("layer_profile.png", "statistics per layer")
    doc.heading(2, "Rank: over images, and per image (would lowrank serve?)")
    doc.table(RANK_HEADER, _rank_rows(layers))
    doc.image("spectra.png", "spectrum of the attention over images")
    if drawn:
        doc.heading(2, "The attention of single images")
        doc.paragraph(
            "Per layer: the mean modulation over all images, then the first images' attention minus "
            "that mean, one output channel x input channel block per kernel tap: "
            + ", ".join(f"[{name}]({path})" for name, path in drawn)
            + "."
        )
        doc.image(drawn[0][1], f"attention of single images, {drawn[0][0]}")
        if len(drawn) > 1:
            doc.image(drawn[-1][1], f"attention of single images, {drawn[-1][0]}")
    doc.heading(2, "Definitions")
    doc.bullets(DEFINITIONS)
    md_path = out_dir / "report.md"
    atomic_write(md_path, lambda file: file.write(doc.markdown().encode()))
    atomic_write(out_dir / "report.html", lambda file: file.write(doc.html(title).encode()))
    summary = {
        "configuration": configuration,
        "images": result.images,
        "top1": result.top1,
        "class_counts": result.class_counts,
        "options": result.options,
        "layers": [stats.summary() for stats in layers],
    }
    atomic_write(out_dir / "statistics.json", lambda file: file.write(json.dumps(summary, indent=2).encode()))
    return md_path
