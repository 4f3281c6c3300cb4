"""``LayerAccumulator``: one AW layer's attention streamed into running sums, then its statistics.

The sums run in float64 over chunks of at most ``CHUNK_VALUES`` attention values; the per-class sums
and the spectrum's sample cover a fixed random subset of positions for layers larger than
``max_positions``. The spectrum's and the per-image matrices' images are uniform random samples of
the stream (``Reservoir``, chosen once for all layers), so the order of the loader does not bias
them; the drawn images are the first ones.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import Tensor

from awconv.engine.inspection.layer_statistics import (
    GATE_BOUNDS,
    HISTOGRAM_BINS,
    MATRIX_RANKS,
    SATURATION_MARGIN,
    UNBOUNDED_RANGE,
    LayerStatistics,
    effective_rank,
    gaussian_matrix_energy,
)
from awconv.layers import AWConv2d

__all__ = ["CHUNK_VALUES", "LayerAccumulator", "Reservoir"]

CHUNK_VALUES = 1 << 21  # attention values processed at once in float64 (16 MB)


class Reservoir:
    """Which images a uniform random sample of at most ``size`` images of a stream keeps.

    Vitter's algorithm R with a seeded generator. The driver assigns the slots once per batch and
    every layer stores its values in them, so all layers keep the same images.

    Attributes:
        indices: per slot, the stream position (0-based) of the image it holds.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.random = random.Random(seed)
        self.indices: list[int] = []
        self.seen = 0

    def assign(self, count: int) -> Tensor:
        """The slot of each of the next ``count`` images, -1 for those not kept: (count,) int64."""
        slots = torch.full((count,), -1, dtype=torch.int64)
        for k in range(count):
            position = self.seen + k
            slot = position if position < self.size else self.random.randint(0, position)
            if slot < self.size:
                slots[slots == slot] = -1  # a later image of the batch replaces an earlier one
                slots[k] = slot
                if slot == len(self.indices):
                    self.indices.append(position)
                else:
                    self.indices[slot] = position
        self.seen += count
        return slots


class LayerAccumulator:
    """Running sums of one layer's attention (see ``LayerStatistics`` for what they become)."""

    def __init__(
        self,
        name: str,
        layer: AWConv2d,
        *,
        draw: int,
        spectrum_images: int,
        max_positions: int,
        matrix_images: int,
    ) -> None:
        self.name, self.layer = name, layer
        self.shape = tuple(layer.weight.shape)
        self.size = math.prod(self.shape)
        self.draw, self.spectrum_images, self.matrix_images = draw, spectrum_images, matrix_images
        device = layer.weight.device
        generator = torch.Generator().manual_seed(0)
        self.tracked = (
            None
            if self.size <= max_positions
            else torch.randperm(self.size, generator=generator)[:max_positions].sort().values.to(device)
        )
        self.bounds = GATE_BOUNDS[layer.generator.gate]
        low, high = self.bounds or UNBOUNDED_RANGE
        self.edges = torch.linspace(low, high, HISTOGRAM_BINS + 1, dtype=torch.float64)
        f64 = {"dtype": torch.float64, "device": device}
        c2, c1, kh, kw = self.shape
        self.count = 0
        self.sum, self.sum_sq = torch.zeros(self.size, **f64), torch.zeros(self.size, **f64)
        # Means over output channels, input channels and taps, per image: their sums and squares.
        self.marginal_shapes = {
            "output_channels": c1 * kh * kw,
            "input_channels": c2 * kh * kw,
            "taps": c2 * c1,
        }
        self.marginal_sum = {k: torch.zeros(n, **f64) for k, n in self.marginal_shapes.items()}
        self.marginal_sum_sq = {k: torch.zeros(n, **f64) for k, n in self.marginal_shapes.items()}
        self.within_var = dict.fromkeys(self.marginal_shapes, 0.0)
        self.histogram = torch.zeros(HISTOGRAM_BINS, **f64)
        self.low_count = self.high_count = 0
        self.minimum, self.maximum = math.inf, -math.inf
        tracked_size = self.size if self.tracked is None else len(self.tracked)
        self.class_sum = torch.zeros(0, tracked_size, **f64)
        self.class_count = torch.zeros(0, **f64)
        self.sample: Tensor | None = None  # (spectrum_images, tracked positions) float32, by slot
        self.sample_rows = 0
        self.distances: list[Tensor] = []
        self.weight = layer.weight.detach().double().flatten()
        self.matrices: Tensor | None = None  # (matrix_images, C2, C1/g, kh, kw) float64, by slot
        self.matrix_rows = 0
        self.drawn: list[Tensor] = []
        self.drawn_labels: list[int] = []

    def update(self, x: Tensor, labels: Tensor, spectrum_slots: Tensor, matrix_slots: Tensor) -> None:
        """Adds a batch.

        Args:
            x: (B, C1, H, W), the layer's input.
            labels: (B,) int64.
            spectrum_slots, matrix_slots: (B,) int64, each image's slot in the spectrum's and the
                matrices' sample (``Reservoir.assign``), -1 for none.
        """
        if x.shape[0] != labels.shape[0]:
            raise RuntimeError(
                f"AW layer '{self.name}' saw {x.shape[0]} images for a batch of {labels.shape[0]}: "
                "inspection needs every AW layer to run once per image"
            )
        chunk = max(1, CHUNK_VALUES // self.size)
        parts = zip(
            x.split(chunk),
            labels.split(chunk),
            spectrum_slots.split(chunk),
            matrix_slots.split(chunk),
            strict=True,
        )
        for part, part_labels, part_spectrum, part_matrix in parts:
            self._add(self.layer.attention(part), part_labels, part_spectrum, part_matrix)

    def _add(self, attention32: Tensor, labels: Tensor, spectrum_slots: Tensor, matrix_slots: Tensor) -> None:
        """attention32: (B, C2, C1/g, kh, kw), the layer's dtype; sums run in float64."""
        modulation = 1 + attention32.flatten(1).float()  # binning and extremes need no float64
        low, high = self.bounds or UNBOUNDED_RANGE
        if self.bounds is None:
            modulation = modulation.clamp(low, high)
        self.histogram += torch.histc(modulation, HISTOGRAM_BINS, low, high).to(self.histogram)
        if self.bounds is not None:
            self.low_count += int((modulation <= low + SATURATION_MARGIN).sum())
            self.high_count += int((modulation >= high - SATURATION_MARGIN).sum())
        self.minimum = min(self.minimum, float((1 + attention32).min()))
        self.maximum = max(self.maximum, float((1 + attention32).max()))
        attention = attention32.double()
        flat = attention.flatten(1)  # (B, D)
        squares = flat.square()
        mean_square = squares.mean(1)  # (B,)
        self.count += attention.shape[0]
        self.sum += flat.sum(0)
        self.sum_sq += squares.sum(0)
        for key, dims in (("output_channels", 1), ("input_channels", 2), ("taps", (3, 4))):
            marginal = attention.mean(dims).flatten(1)
            marginal_sq = marginal.square()
            self.marginal_sum[key] += marginal.sum(0)
            self.marginal_sum_sq[key] += marginal_sq.sum(0)
            # the mean over the other dimensions of the variance along these: E[A^2] - E[mean^2]
            self.within_var[key] += float((mean_square - marginal_sq.mean(1)).sum())
        tracked = flat if self.tracked is None else flat[:, self.tracked]
        classes = int(labels.max()) + 1
        if classes > len(self.class_count):
            grow = classes - len(self.class_count)
            self.class_sum = torch.cat([self.class_sum, self.class_sum.new_zeros(grow, tracked.shape[1])])
            self.class_count = torch.cat([self.class_count, self.class_count.new_zeros(grow)])
        self.class_sum.index_add_(0, labels, tracked)
        self.class_count.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        kept = spectrum_slots >= 0
        if kept.any():
            if self.sample is None:
                self.sample = tracked.new_empty(self.spectrum_images, tracked.shape[1], dtype=torch.float32)
            self.sample[spectrum_slots[kept]] = tracked[kept].float()
            self.sample_rows = max(self.sample_rows, int(spectrum_slots.max()) + 1)
        self.distances.append((flat * self.weight).norm(dim=1) / self.weight.norm())
        kept = matrix_slots >= 0
        if kept.any():
            if self.matrices is None:
                self.matrices = attention.new_empty(self.matrix_images, *self.shape)
            self.matrices[matrix_slots[kept]] = attention[kept]
            self.matrix_rows = max(self.matrix_rows, int(matrix_slots.max()) + 1)
        if len(self.drawn) < self.draw:
            take = self.draw - len(self.drawn)
            self.drawn.extend(attention[:take].float().cpu())
            self.drawn_labels.extend(int(label) for label in labels[:take])

    def _matrix_ranks(self, attention: Tensor) -> tuple[dict[int, float], float]:
        """attention: (M, C2, C1/g, kh, kw) -> ({R: energy share of the best rank R}, mean effective rank).

        Every (image, tap) C2 x C1/g matrix is decomposed; the shares are over all of them together.
        """
        if not len(attention):
            return dict.fromkeys(MATRIX_RANKS, 1.0), 0.0
        c2, c1 = self.shape[:2]
        energies = torch.linalg.svdvals(attention.permute(0, 3, 4, 1, 2).reshape(-1, c2, c1)).square()
        total = float(energies.sum())
        shares = {r: float(energies[:, :r].sum()) / total if total > 0 else 1.0 for r in MATRIX_RANKS}
        return shares, float(effective_rank(energies).mean())

    def result(self) -> LayerStatistics:
        n = self.count
        mean = self.sum / n
        variance = (self.sum_sq / n - mean.square()).clamp_min(0)  # over images, per position
        mean_square = float(self.sum_sq.sum()) / (n * self.size)
        image_variance = float(variance.mean())
        varies = image_variance > 0 and n > 1

        def share_not_common(key: str) -> float | None:
            marginal_mean = self.marginal_sum[key] / n
            common = float((self.marginal_sum_sq[key] / n - marginal_mean.square()).clamp_min(0).mean())
            return min(1.0, max(0.0, 1 - common / image_variance)) if varies else None

        tracked_mean = mean if self.tracked is None else mean[self.tracked]
        tracked_sum_sq = self.sum_sq if self.tracked is None else self.sum_sq[self.tracked]
        total_ss = float((tracked_sum_sq - n * tracked_mean.square()).clamp_min(0).sum())
        present = self.class_count > 0
        class_means_ss = (self.class_sum[present].square() / self.class_count[present, None]).sum(0)
        between_ss = float((class_means_ss - n * tracked_mean.square()).clamp_min(0).sum())
        classes = int(present.sum())
        spectrum = self._spectrum()
        matrices = (
            mean.new_zeros(0, *self.shape) if self.matrices is None else self.matrices[: self.matrix_rows]
        )
        matrix_energy, matrix_rank = self._matrix_ranks(matrices)
        deviation_energy, deviation_rank = self._matrix_ranks(matrices - mean.reshape(self.shape))
        cumulative = np.cumsum(spectrum)
        weight_sq = self.weight.square()
        distances = torch.cat(self.distances).cpu().numpy() if self.distances else np.zeros(0)
        generator = self.layer.generator
        return LayerStatistics(
            name=self.name,
            shape=self.shape,
            generator=generator.kind,
            gate=generator.gate,
            pool=generator.pool,
            rank=generator.rank,
            hidden=generator.hidden,
            pooled_taps=self.shape[2] * self.shape[3] if generator.pool == "kernel" else 1,
            images=n,
            histogram_edges=self.edges.numpy(),
            histogram_counts=self.histogram.cpu().numpy(),
            modulation_mean=1 + float(self.sum.sum()) / (n * self.size),
            modulation_std=math.sqrt(max(0.0, mean_square - (float(self.sum.sum()) / (n * self.size)) ** 2)),
            modulation_min=self.minimum,
            modulation_max=self.maximum,
            saturated_low=None if self.bounds is None else self.low_count / (n * self.size),
            saturated_high=None if self.bounds is None else self.high_count / (n * self.size),
            attention_rms=math.sqrt(mean_square),
            static_rms=math.sqrt(float(mean.square().mean())),
            image_std=math.sqrt(image_variance),
            image_share=image_variance / mean_square if varies else None,
            class_share=between_ss / total_ss if varies and total_ss > 0 else None,
            class_share_chance=(classes - 1) / (n - 1) if n > 1 else None,
            output_channel_share=share_not_common("output_channels"),
            input_channel_share=share_not_common("input_channels"),
            tap_share=share_not_common("taps"),
            within_image_std={k: math.sqrt(max(0.0, v / n)) for k, v in self.within_var.items()},
            kernel_distances=distances,
            kernel_spread=math.sqrt(float((weight_sq * variance).sum()) / float(weight_sq.sum())),
            spectrum=spectrum,
            effective_rank=float(effective_rank(torch.from_numpy(spectrum))) if spectrum.size else 0.0,
            directions_90=int(np.searchsorted(cumulative, 0.9 - 1e-12) + 1) if spectrum.size else 0,
            directions_99=int(np.searchsorted(cumulative, 0.99 - 1e-12) + 1) if spectrum.size else 0,
            spectrum_images=self.sample_rows,
            tracked_positions=None if self.tracked is None else self.tracked.cpu().numpy(),
            matrix_images=self.matrix_rows,
            matrix_energy=matrix_energy,
            matrix_effective_rank=matrix_rank,
            matrix_energy_gaussian=gaussian_matrix_energy(*self.shape[:2]),
            deviation_energy=deviation_energy,
            deviation_effective_rank=deviation_rank,
            mean_attention=mean.reshape(self.shape).float().cpu().numpy(),
            drawn=torch.stack(self.drawn).numpy() if self.drawn else np.zeros((0, *self.shape), np.float32),
            drawn_labels=self.drawn_labels,
        )

    def _spectrum(self) -> np.ndarray:
        """Variance shares of the directions of the centred sample, from its Gram matrix."""
        if self.sample_rows < 2:
            return np.zeros(0)
        sample = self.sample[: self.sample_rows].double()
        centred = sample - sample.mean(0)
        eigenvalues = torch.linalg.eigvalsh(centred @ centred.T).flip(0).clamp_min(0)
        total = float(eigenvalues.sum())
        if total <= 0:
            return np.zeros(0)
        return (eigenvalues / total).cpu().numpy()
