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

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from awconv.engine.inspection.accumulator import LayerAccumulator, Reservoir
from awconv.engine.inspection.layer_statistics import InspectionResult
from awconv.layers import AWConv2d

__all__ = ["attention_statistics"]


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
        draw: the first images, whose full attention is kept for drawing.
        spectrum_images: the size of the uniform random sample of images (the same for every
            layer) whose spectrum is computed.
        max_positions: layers with more weight positions track a fixed random subset of this many
            for the class statistics and the spectrum.
        matrix_images: the size of the random sample of images whose per-tap attention matrices are
            decomposed.

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
        LayerAccumulator(
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
    spectrum_sample, matrix_sample = Reservoir(spectrum_images, seed=0), Reservoir(matrix_images, seed=1)
    batch: list[Tensor] = []  # this batch's labels and sample slots, read by the hooks

    def hook(accumulator: LayerAccumulator):
        return lambda module, inputs, output: accumulator.update(inputs[0], *batch)

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
            if labels.dim() != 1 or (take and int(labels.min()) < 0):
                raise ValueError(
                    f"loader labels must be (B,) class indices >= 0, got shape {tuple(labels.shape)}"
                    + (f" with minimum {int(labels.min())}" if labels.numel() else "")
                )
            batch[:] = [labels, *(r.assign(take).to(device) for r in (spectrum_sample, matrix_sample))]
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
        spectrum_indices=spectrum_sample.indices,
        matrix_indices=matrix_sample.indices,
    )
