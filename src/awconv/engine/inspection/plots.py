"""Figures of ``attention_statistics``: histograms, a per-layer profile, spectra, kernels, attention images.

Every function takes the statistics and a ``title`` naming the configuration (model, weights,
data, images), writes one image file and returns nothing.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

from awconv.engine.inspection.layer_statistics import GATE_BOUNDS, SATURATION_MARGIN, LayerStatistics

__all__ = [
    "plot_attention_images",
    "plot_kernel_distances",
    "plot_layer_profile",
    "plot_modulation_histograms",
    "plot_spectra",
]


COLOR_PERCENTILE = 99.5


def _wrap(title: str, width: int = 120) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def _save(fig: plt.Figure, path: str | Path, title: str | None = None) -> None:
    if title is not None:
        fig.suptitle(_wrap(title), fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _value(value: float | None) -> float:
    return math.nan if value is None else value


def plot_modulation_histograms(layers: Sequence[LayerStatistics], path: str | Path, *, title: str) -> None:
    """One histogram of the modulation 1 + A per layer (log scale), zoomed to the values' range."""
    columns = min(6, len(layers))
    rows = math.ceil(len(layers) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 1.9 * rows + 1.0), squeeze=False)
    for ax, stats in zip(axes.flat, layers, strict=False):
        shares = stats.histogram_counts / max(1.0, stats.histogram_counts.sum())
        edges = stats.histogram_edges
        filled = np.flatnonzero(shares)
        first, last = (filled[0], filled[-1] + 1) if filled.size else (0, len(shares))
        ax.stairs(shares[first:last], edges[first : last + 1], fill=True, alpha=0.7)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=4))
        ax.yaxis.set_minor_locator(NullLocator())  # a log axis's minor ticks cost seconds per panel
        low, high = edges[first], edges[last]
        pad = max(0.1 * (high - low), 4 * (edges[1] - edges[0]))
        ax.set_xlim(max(edges[0], low - pad), min(edges[-1], high + pad))
        for bound in GATE_BOUNDS[stats.gate] or ():
            if low - pad <= bound <= high + pad:
                ax.axvline(bound, color="k", linestyle="--", linewidth=0.8)
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=0.8)
        saturated = (_value(stats.saturated_low) + _value(stats.saturated_high)) * 100
        note = "" if math.isnan(saturated) else f", {saturated:.1f}% sat."
        ax.set_title(f"{stats.name}{note}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(layers) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("modulation 1 + A", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of values", fontsize=7)
    bounds = ", ".join(f"{gate} {b[0]:g} to {b[1]:g}" for gate, b in GATE_BOUNDS.items() if b)
    note = (
        f"x zoomed to the values; gates bound 1 + A ({bounds}); sat.: within {SATURATION_MARGIN} of a bound"
    )
    title = _wrap(f"{title}\nDistribution of the modulation 1 + A per AW layer ({note})")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.17 * (title.count("\n") + 1) + 0.05) / fig.get_figheight()))
    _save(fig, path, title)


def _percent(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def plot_layer_profile(layers: Sequence[LayerStatistics], path: str | Path, *, title: str) -> None:
    """Four panels against the layer: size, variation shares, ranks over images, per-image matrix rank."""
    x = np.arange(len(layers))
    fig, axes = plt.subplots(2, 2, figsize=(15, 8.5), sharex=True, constrained_layout=True)
    size_ax, share_ax, rank_ax, matrix_ax = axes.flat

    def line(ax, values, label, style="-o", color=None):
        ax.plot(x, [_value(v) for v in values], style, label=label, markersize=4, color=color)

    line(size_ax, [s.attention_rms for s in layers], "RMS of A")
    line(size_ax, [s.static_rms for s in layers], "RMS of the mean over images")
    line(size_ax, [s.image_std for s in layers], "RMS std over images")
    line(size_ax, [s.kernel_distances.mean() for s in layers], "mean ||A_n * W|| / ||W||", "-s")
    line(size_ax, [s.kernel_spread for s in layers], "RMS ||(A_n - mean A) * W|| / ||W||", "-s")
    size_ax.set(ylabel="size (A and W's ratios are unitless)", title="How large the attention is")

    line(share_ax, _percent([s.image_share for s in layers]), "image-dependent share of mean A^2", color="C0")
    line(
        share_ax,
        _percent([s.class_share for s in layers]),
        "class share of that variation (eta^2)",
        color="C1",
    )
    chance = _percent([s.class_share_chance for s in layers])
    line(share_ax, chance, "eta^2 expected with no class effect", ":", "C1")
    line(
        share_ax,
        _percent([s.output_channel_share for s in layers]),
        "not common to output channels",
        color="C2",
    )
    line(share_ax, [100 * (1 - 1 / s.shape[0]) for s in layers], "... if uncorrelated: 1 - 1/C2", ":", "C2")
    line(share_ax, _percent([s.tap_share for s in layers]), "not common to taps", color="C3")
    taps = [100 * (1 - 1 / s.pooled_taps) if s.pooled_taps > 1 else None for s in layers]
    line(share_ax, taps, "... if uncorrelated: 1 - 1/(kh kw)", ":", "C3")
    share_ax.set(ylabel="share (%)", ylim=(-3, 103), title="How the attention varies between images")

    line(rank_ax, [s.effective_rank for s in layers], "effective rank over images")
    line(rank_ax, [s.directions_90 for s in layers], "directions for 90% of the variance")
    line(rank_ax, [s.directions_99 for s in layers], "directions for 99% of the variance")
    line(rank_ax, [s.hidden * s.pooled_taps for s in layers], "hidden values d x P", "--")
    rank_ax.set(
        ylabel="directions", title=f"Spectrum over a random sample of {layers[0].spectrum_images} images"
    )
    rank_ax.set_yscale("log")
    rank_ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    rank_ax.yaxis.set_major_formatter(ScalarFormatter())
    rank_ax.yaxis.set_minor_formatter(NullFormatter())

    line(matrix_ax, _percent([s.matrix_energy[1] for s in layers]), "A, rank 1", color="C0")
    line(matrix_ax, _percent([s.matrix_energy[4] for s in layers]), "A, rank 4", "-s", "C0")
    line(matrix_ax, _percent([s.deviation_energy[1] for s in layers]), "A - mean A, rank 1", color="C1")
    line(matrix_ax, _percent([s.deviation_energy[4] for s in layers]), "A - mean A, rank 4", "-s", "C1")
    line(
        matrix_ax,
        _percent([s.matrix_energy_gaussian[1] for s in layers]),
        "Gaussian matrix, rank 1",
        ":",
        "C7",
    )
    line(
        matrix_ax,
        _percent([s.matrix_energy_gaussian[4] for s in layers]),
        "Gaussian matrix, rank 4",
        "--",
        "C7",
    )
    matrix_ax.set(
        ylabel="energy kept by the best rank-R matrix (%)",
        ylim=(-3, 103),
        title=f"Each image's C2 x C1/g matrix per tap ({layers[0].matrix_images} random images): low rank?",
    )
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.title.set_fontsize(9)
    for ax in axes[1]:
        ax.set_xticks(x, [s.name for s in layers], rotation=70, fontsize=7)
        ax.set_xlabel("AW layer")
    _save(fig, path, f"{title}\nPer AW layer, over {layers[0].images} images")


def plot_spectra(layers: Sequence[LayerStatistics], path: str | Path, *, title: str) -> None:
    """Cumulative variance share against the number of directions over images, one line per layer."""
    fig, ax = plt.subplots(figsize=(8, 5.2), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    for stats, color in zip(layers, colors, strict=True):
        if stats.spectrum.size:
            directions = np.arange(1, stats.spectrum.size + 1)
            ax.plot(directions, 100 * np.cumsum(stats.spectrum), color=color, label=stats.name)
    for level in (90, 99):
        ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set(
        xlabel="number of directions (principal components over images)",
        ylabel="variance of the attention held (%)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    spectrum = f"Spectrum of the centred attention over a random sample of {layers[0].spectrum_images} images"
    ax.set_title(_wrap(f"{title}\n{spectrum}", 100), fontsize=9)
    _save(fig, path)


def plot_kernel_distances(layers: Sequence[LayerStatistics], path: str | Path, *, title: str) -> None:
    """Per layer, the distribution over images of ||(1 + A_n) * W - W|| / ||W|| (box plot)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(layers) + 2), 4.8), constrained_layout=True)
    ax.boxplot([100 * s.kernel_distances for s in layers], showfliers=False)
    ax.set_xticks(np.arange(1, len(layers) + 1), [s.name for s in layers], rotation=70, fontsize=7)
    ax.set(xlabel="AW layer", ylabel="||(1 + A_n) * W - W||_F / ||W||_F (%)")
    ax.grid(alpha=0.3, axis="y")
    what = "How far each image's kernel moves from W (box: quartiles, whiskers: 1.5 IQR)"
    ax.set_title(_wrap(f"{title}\n{what}", 100), fontsize=9)
    _save(fig, path)


def _color_limit(values: np.ndarray) -> float:
    """The color scale's half-range: a high percentile of |values|, so that a few outliers (shown in
    the extreme color) do not wash out the rest."""
    if not values.size:
        return 1.0
    return float(np.percentile(np.abs(values), COLOR_PERCENTILE)) or 1e-6


def _mosaic(attention: np.ndarray) -> np.ndarray:
    """(C2, C1, kh, kw) -> one image: a C2 x C1 block per tap, laid out as the kernel, NaN between."""
    c2, c1, kh, kw = attention.shape
    image = np.full((kh * (c2 + 1) - 1, kw * (c1 + 1) - 1), np.nan)
    for i in range(kh):
        for j in range(kw):
            image[i * (c2 + 1) : i * (c2 + 1) + c2, j * (c1 + 1) : j * (c1 + 1) + c1] = attention[:, :, i, j]
    return image


def plot_attention_images(
    stats: LayerStatistics, path: str | Path, *, title: str, classes: Sequence[str] | None = None
) -> None:
    """The mean modulation 1 + mean(A), then each drawn image's A_n - mean(A).

    Each panel holds one output channel x input channel block per kernel tap, in the kernel's layout.
    """
    panels = 1 + len(stats.drawn)
    c2, c1, kh, kw = stats.shape
    aspect = (kh * (c2 + 1)) / (kw * (c1 + 1))
    width = 3.2
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(width * panels + 1, width * min(2.0, aspect) + 1.2),
        squeeze=False,
        constrained_layout=True,
    )
    mean = 1 + stats.mean_attention
    spread = _color_limit(mean - 1)
    image = axes[0, 0].imshow(
        _mosaic(mean), cmap="PuOr_r", vmin=1 - spread, vmax=1 + spread, interpolation="nearest"
    )
    fig.colorbar(image, ax=axes[0, 0], shrink=0.8, label="1 + mean A")
    axes[0, 0].set_title(f"mean over {stats.images} images", fontsize=8)
    deviations = stats.drawn - stats.mean_attention
    limit = _color_limit(deviations)
    for k, (deviation, label) in enumerate(zip(deviations, stats.drawn_labels, strict=True)):
        ax = axes[0, k + 1]
        image = ax.imshow(_mosaic(deviation), cmap="RdBu_r", vmin=-limit, vmax=limit)
        name = classes[label] if classes is not None and label < len(classes) else str(label)
        ax.set_title(f"image {k + 1} (class {name}): A_n - mean", fontsize=8)
    if deviations.size:
        fig.colorbar(image, ax=list(axes[0, 1:]), shrink=0.8, label="A_n - mean A")
    for ax in axes[0]:
        ax.set_xlabel(f"input channel (C1/g = {c1}), one block per tap", fontsize=7)
        ax.set_ylabel(f"output channel (C2 = {c2})", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    pool = "; global pool: every tap the same" if stats.pool == "global" else ""
    pool += f"; colors clipped at the {COLOR_PERCENTILE}th percentile of |value|"
    _save(fig, path, f"{title}\n{stats.name}: attention {stats.shape} as {kh} x {kw} taps{pool}")
