"""What ``attention_statistics`` returns: ``LayerStatistics`` per AW layer, ``InspectionResult``.

Plain numbers and numpy arrays, and the references they are read against: the gate's bounds, the
effective rank of a spectrum, and the rank-R energy of a matrix without structure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GATE_BOUNDS",
    "HISTOGRAM_BINS",
    "MATRIX_RANKS",
    "SATURATION_MARGIN",
    "UNBOUNDED_RANGE",
    "InspectionResult",
    "LayerStatistics",
    "effective_rank",
    "gaussian_matrix_energy",
]

# The range of the modulation 1 + A under each gate (None: unbounded).
GATE_BOUNDS: dict[str, tuple[float, float] | None] = {"tanh": (0.0, 2.0), "sigmoid": (1.0, 2.0), "none": None}
UNBOUNDED_RANGE = (-1.0, 3.0)  # the histogram's range for gate "none"; values outside count in the end bins
SATURATION_MARGIN = 0.05  # a modulation this close to a gate bound counts as saturated
HISTOGRAM_BINS = 1000
MATRIX_RANKS = (1, 4)


def effective_rank(energies: Tensor) -> Tensor:
    """exp(entropy) of the normalised energies (Roy & Vetterli 2007); 0 where all are zero.

    Args:
        energies: (..., K) non-negative (eigenvalues or squared singular values).

    Returns:
        (...,), between 1 and K where any energy is positive.
    """
    total = energies.sum(-1, keepdim=True)
    shares = energies / total.clamp_min(torch.finfo(energies.dtype).tiny)
    entropy = -(shares * torch.log(shares.clamp_min(torch.finfo(energies.dtype).tiny))).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))


@functools.lru_cache(maxsize=64)
def gaussian_matrix_energy(rows: int, cols: int, samples: int = 64) -> dict[int, float]:
    """The energy share the best rank-R matrix keeps of a rows x cols matrix of independent normal
    values, the reference for an attention matrix without structure; mean of ``samples`` draws (seed 0).

    Returns:
        ``{R: share}`` for R in ``MATRIX_RANKS``.
    """
    matrices = torch.randn(
        samples, rows, cols, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    energies = torch.linalg.svdvals(matrices).square()
    energies = energies / energies.sum(1, keepdim=True)
    return {rank: float(energies[:, :rank].sum(1).mean()) for rank in MATRIX_RANKS}


@dataclass
class LayerStatistics:
    """One AW layer's attention over the inspected images; plain numbers and arrays.

    Shares are fractions in [0, 1]; "RMS" is over every weight position and image. Fields that need
    variation between images are ``None`` when the attention does not vary (or for one image).

    Attributes:
        name: the layer's qualified name in the model.
        shape: (C2, C1/g, kh, kw), the attention's shape (the weight's).
        generator, gate, pool, rank: the generator's options.
        hidden: d, Pointconv1's width; ``pooled_taps``: P, positions it sees (kh*kw or 1).
        images: N, images inspected.
        histogram_edges: (HISTOGRAM_BINS + 1,) bin edges of the modulation 1 + A.
        histogram_counts: (HISTOGRAM_BINS,) values per bin, over all positions and images.
        modulation_mean, modulation_std, modulation_min, modulation_max: of 1 + A, all values.
        saturated_low, saturated_high: shares of values within ``SATURATION_MARGIN`` of the gate's
            lower / upper bound (``None`` for gate "none").
        attention_rms: sqrt(mean A^2).
        static_rms: RMS over positions of the mean attention over images.
        image_std: RMS over positions of the standard deviation over images.
        image_share: image_std^2 / attention_rms^2, the share of the mean square that varies
            between images.
        class_share: eta^2, between-class over between-image variance, summed over the tracked
            positions; ``class_share_chance``: its expected value with no class effect, (K-1)/(N-1).
        output_channel_share, input_channel_share, tap_share: the shares of the between-image
            variance that are not common to all output channels / input channels / taps.
            Uncorrelated channels would give 1 - 1/C2, 1 - 1/(C1/g) and 1 - 1/(kh*kw).
        within_image_std: RMS standard deviation of A inside one image across output channels,
            input channels and taps: ``{"output_channels": ..., "input_channels": ..., "taps": ...}``.
        kernel_distances: (N,) ||A_n * W||_F / ||W||_F per image.
        kernel_spread: RMS over images of ||(A_n - mean A) * W||_F / ||W||_F.
        spectrum: variance shares of the directions over images, descending (sums to 1).
        effective_rank: exp(entropy) of ``spectrum``; ``directions_90``, ``directions_99``: the
            fewest directions holding 90% / 99% of the variance.
        spectrum_images: images in the spectrum's sample (a uniform random sample of the stream).
        tracked_positions: (M,) flat positions used by ``class_share`` and the spectrum, or ``None``
            for all of them.
        matrix_images: images (a uniform random sample) whose per-tap matrices are decomposed.
        matrix_energy: {R: share of ||A_n[:, :, tap]||^2 kept by its best rank-R approximation},
            over ``matrix_images`` images and every tap.
        matrix_effective_rank: mean effective rank of those C2 x C1/g matrices.
        matrix_energy_gaussian: ``matrix_energy`` of matrices of independent normal values of the
            same shape (``gaussian_matrix_energy``): what no structure at all would give.
        deviation_energy, deviation_effective_rank: the same for A_n - mean A, the part of the
            attention that changes between images.
        mean_attention: (C2, C1/g, kh, kw) the mean over images.
        drawn: (k, C2, C1/g, kh, kw) the attention of the first k images; ``drawn_labels``: theirs.
    """

    name: str
    shape: tuple[int, int, int, int]
    generator: str
    gate: str
    pool: str
    rank: int
    hidden: int
    pooled_taps: int
    images: int
    histogram_edges: np.ndarray
    histogram_counts: np.ndarray
    modulation_mean: float
    modulation_std: float
    modulation_min: float
    modulation_max: float
    saturated_low: float | None
    saturated_high: float | None
    attention_rms: float
    static_rms: float
    image_std: float
    image_share: float | None
    class_share: float | None
    class_share_chance: float | None
    output_channel_share: float | None
    input_channel_share: float | None
    tap_share: float | None
    within_image_std: dict[str, float]
    kernel_distances: np.ndarray
    kernel_spread: float
    spectrum: np.ndarray
    effective_rank: float
    directions_90: int
    directions_99: int
    spectrum_images: int
    tracked_positions: np.ndarray | None
    matrix_images: int
    matrix_energy: dict[int, float]
    matrix_effective_rank: float
    matrix_energy_gaussian: dict[int, float]
    deviation_energy: dict[int, float]
    deviation_effective_rank: float
    mean_attention: np.ndarray
    drawn: np.ndarray
    drawn_labels: list[int]

    def summary(self) -> dict[str, Any]:
        """The scalar statistics as JSON-ready values (no per-image or per-position arrays)."""
        arrays = {"histogram_edges", "histogram_counts", "kernel_distances", "tracked_positions"}
        arrays |= {"mean_attention", "drawn", "drawn_labels", "spectrum"}
        values = {k: v for k, v in self.__dict__.items() if k not in arrays}
        distances = self.kernel_distances
        values["kernel_distance_mean"] = float(distances.mean()) if distances.size else 0.0
        values["kernel_distance_max"] = float(distances.max()) if distances.size else 0.0
        values["spectrum_top10"] = [float(v) for v in self.spectrum[:10]]
        values["tracked_positions"] = None if self.tracked_positions is None else len(self.tracked_positions)
        values["matrix_energy"] = {str(k): v for k, v in self.matrix_energy.items()}
        values["deviation_energy"] = {str(k): v for k, v in self.deviation_energy.items()}
        values["matrix_energy_gaussian"] = {str(k): v for k, v in self.matrix_energy_gaussian.items()}
        values["shape"] = list(self.shape)
        return values


@dataclass
class InspectionResult:
    """``attention_statistics``' answer.

    Attributes:
        layers: one entry per AW layer, in the model's module order.
        images: images inspected.
        class_counts: images per label (index = label).
        top1: share of the inspected images the model classified correctly (``None`` when its
            output is not (N, classes) logits).
        options: the sample sizes used (``draw``, ``spectrum_images``, ``max_positions``,
            ``matrix_images``).
        spectrum_indices, matrix_indices: the stream positions (0-based) of the images in the
            spectrum's and the per-image matrices' samples.
    """

    layers: list[LayerStatistics]
    images: int
    class_counts: list[int]
    top1: float | None = None
    options: dict[str, int] = field(default_factory=dict)
    spectrum_indices: list[int] = field(default_factory=list)
    matrix_indices: list[int] = field(default_factory=list)
