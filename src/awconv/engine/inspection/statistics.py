"""What the weight-shaped attention of a model's AW layers does, measured over many images.

Paper: Zhu et al., "An Attention Module for Convolutional Neural Networks" (arXiv 2108.08205).
Its argument is about capacity: every output channel and kernel tap gets its own sample-dependent
recalibration ``(1 + A_n) * W``. ``attention_statistics(model, loader)`` measures whether a
trained model uses that: forward hooks on every ``AWConv2d`` compute ``layer.attention(x)`` on the
layer's input and stream it into running sums, so memory stays bounded however many images pass.
Per layer, for the attention ``A_n`` (C2, C1/g, kh, kw) of image ``n``:

- the modulation ``1 + A``: histogram, moments, share within ``SATURATION_MARGIN`` of the gate's bounds;
- variation between images: the share of the attention's mean square that changes from image to
  image (``image_share``; 0 means a fixed reweighting that could be folded into W), the share of
  that variation explained by the class (``class_share``, eta squared, against its value with no
  class effect), and how much of it differs across output channels, input channels and taps;
- the modulated kernels: ``||A_n * W|| / ||W||`` per image (how far each kernel moves from W) and
  the RMS distance of the per-image kernels from their mean;
- the spectrum over images of the centred attention (a bounded sample): effective rank and the
  directions that hold 90% / 99% of the variance;
- per image and tap, the singular values of the C2 x C1/g attention matrix (and of its deviation
  from the mean over images): the energy a rank-1 or rank-4 matrix keeps, which is what the
  ``lowrank`` generator would have to reproduce.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from awconv.layers import AWConv2d

__all__ = [
    "GATE_BOUNDS",
    "SATURATION_MARGIN",
    "InspectionResult",
    "LayerStatistics",
    "attention_statistics",
    "effective_rank",
    "gaussian_matrix_energy",
]

# The range of the modulation 1 + A under each gate (None: unbounded).
GATE_BOUNDS: dict[str, tuple[float, float] | None] = {"tanh": (0.0, 2.0), "sigmoid": (1.0, 2.0), "none": None}
UNBOUNDED_RANGE = (-1.0, 3.0)  # the histogram's range for gate "none"; values outside count in the end bins
SATURATION_MARGIN = 0.05  # a modulation this close to a gate bound counts as saturated
HISTOGRAM_BINS = 1000
MATRIX_RANKS = (1, 4)
_CHUNK_VALUES = 1 << 21  # attention values processed at once in float64 (16 MB)


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
        spectrum_images: images in the spectrum's sample (the first ones).
        tracked_positions: (M,) flat positions used by ``class_share`` and the spectrum, or ``None``
            for all of them.
        matrix_images: the first images whose per-tap matrices are decomposed.
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
    """

    layers: list[LayerStatistics]
    images: int
    class_counts: list[int]
    top1: float | None = None
    options: dict[str, int] = field(default_factory=dict)


class _LayerAccumulator:
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
        self.sample: list[Tensor] = []
        self.sample_rows = 0
        self.distances: list[Tensor] = []
        self.weight = layer.weight.detach().double().flatten()
        self.matrices: list[Tensor] = []
        self.matrix_rows = 0
        self.drawn: list[Tensor] = []
        self.drawn_labels: list[int] = []

    def update(self, x: Tensor, labels: Tensor) -> None:
        """x: (B, C1, H, W), the layer's input; labels: (B,) int64."""
        if x.shape[0] != labels.shape[0]:
            raise RuntimeError(
                f"AW layer '{self.name}' saw {x.shape[0]} images for a batch of {labels.shape[0]}: "
                "inspection needs every AW layer to run once per image"
            )
        chunk = max(1, _CHUNK_VALUES // self.size)
        for part, part_labels in zip(x.split(chunk), labels.split(chunk), strict=True):
            self._add(self.layer.attention(part), part_labels)

    def _add(self, attention32: Tensor, labels: Tensor) -> None:
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
        if self.sample_rows < self.spectrum_images:
            kept = tracked[: self.spectrum_images - self.sample_rows].float()
            self.sample.append(kept)
            self.sample_rows += len(kept)
        self.distances.append((flat * self.weight).norm(dim=1) / self.weight.norm())
        if self.matrix_rows < self.matrix_images:
            self.matrices.append(attention[: self.matrix_images - self.matrix_rows])
            self.matrix_rows += len(self.matrices[-1])
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
        matrices = torch.cat(self.matrices) if self.matrices else mean.new_zeros(0, *self.shape)
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
        sample = torch.cat(self.sample).double()
        centred = sample - sample.mean(0)
        eigenvalues = torch.linalg.eigvalsh(centred @ centred.T).flip(0).clamp_min(0)
        total = float(eigenvalues.sum())
        if total <= 0:
            return np.zeros(0)
        return (eigenvalues / total).cpu().numpy()


def _aw_layers(model: nn.Module) -> list[tuple[str, AWConv2d]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, AWConv2d)]


@torch.no_grad()
def attention_statistics(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    images: int | None = None,
    draw: int = 3,
    spectrum_images: int = 256,
    max_positions: int = 65536,
    matrix_images: int = 16,
) -> InspectionResult:
    """Streams ``loader`` through ``model`` in eval mode and measures every AW layer's attention.

    Memory per layer: a few vectors of the weight's size D, (classes + ``spectrum_images``) rows
    of at most ``max_positions`` values, and ``draw + matrix_images`` attention tensors of size D.

    Args:
        model: any module holding ``AWConv2d`` layers (an ``aw_*`` model or one converted with
            ``awconv.convert``), on the device it should run on.
        loader: batches ``(images (B, C, H, W), labels (B,) int64)``.
        images: stop after this many images (``None``: the whole loader).
        draw: images whose full attention is kept for drawing.
        spectrum_images: the first images form the sample whose spectrum is computed.
        max_positions: layers with more weight positions track a fixed random subset of this many
            for the class statistics and the spectrum.
        matrix_images: images whose per-tap attention matrices are decomposed.

    Returns:
        The statistics of every AW layer.

    Raises:
        ValueError: the model has no AW layer, or an option is not a positive int.
    """
    for option, value, least in (
        ("images", images, 1),
        ("draw", draw, 0),
        ("spectrum_images", spectrum_images, 2),
        ("max_positions", max_positions, 1),
        ("matrix_images", matrix_images, 0),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{option} must be an int >= {least}, got {value!r}")
    layers = _aw_layers(model)
    if not layers:
        raise ValueError(
            f"model {type(model).__name__} has no AWConv2d layer: inspection needs an AW model "
            "(aw_* names) or one converted with awconv.convert"
        )
    options = {"draw": draw, "spectrum_images": spectrum_images, "max_positions": max_positions}
    options["matrix_images"] = matrix_images
    accumulators = [
        _LayerAccumulator(
            name,
            layer,
            draw=draw,
            spectrum_images=spectrum_images,
            max_positions=max_positions,
            matrix_images=matrix_images,
        )
        for name, layer in layers
    ]
    device = next(model.parameters()).device
    batch_labels: list[Tensor] = []

    def hook(accumulator: _LayerAccumulator):
        return lambda module, inputs, output: accumulator.update(inputs[0], batch_labels[0])

    handles = [
        layer.register_forward_hook(hook(acc)) for (_, layer), acc in zip(layers, accumulators, strict=True)
    ]
    was_training = model.training
    model.eval()
    seen, correct, logits_ok = 0, 0, True
    class_counts = torch.zeros(0, dtype=torch.int64)
    try:
        for batch_images, labels in loader:
            if images is not None and seen >= images:
                break
            take = len(labels) if images is None else min(len(labels), images - seen)
            batch_images = batch_images[:take].to(device)
            labels = torch.as_tensor(labels[:take], dtype=torch.int64).to(device)
            batch_labels[:] = [labels]
            output = model(batch_images)
            if isinstance(output, Tensor) and output.dim() == 2 and output.shape[0] == take:
                correct += int((output.argmax(1) == labels).sum())
            else:
                logits_ok = False
            counts = torch.bincount(labels.cpu())
            class_counts = torch.nn.functional.pad(class_counts, (0, max(0, len(counts) - len(class_counts))))
            class_counts[: len(counts)] += counts
            seen += take
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("loader yielded no images to inspect")
    return InspectionResult(
        layers=[acc.result() for acc in accumulators],
        images=seen,
        class_counts=class_counts.tolist(),
        top1=correct / seen if logits_ok else None,
        options=options,
    )
