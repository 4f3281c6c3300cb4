"""``inspect_classifier``: a registered model with its weights, inspected on a data set's validation split.

The Python API behind ``awconv inspect``: builds the model by name, loads the weights strictly,
draws ``images`` validation images at random (a fixed seed, so the same images every time), runs
``attention_statistics`` and writes the report with ``write_inspection_report``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from awconv.data.classification import build_classification_data
from awconv.engine.checkpoint import load_weights
from awconv.engine.classification.module import create_classifier
from awconv.engine.inspection.layer_statistics import InspectionResult
from awconv.engine.inspection.report import write_inspection_report
from awconv.engine.inspection.statistics import attention_statistics

__all__ = ["inspect_classifier"]

_logger = logging.getLogger(__name__)


def inspect_classifier(
    model: str,
    weights: str | Path,
    data: str,
    out_dir: str | Path,
    *,
    model_kwargs: dict[str, Any] | None = None,
    images: int = 1000,
    image_size: int | None = None,
    batch_size: int = 100,
    workers: int = 0,
    seed: int = 0,
    draw: int = 3,
    spectrum_images: int = 256,
    device: str = "cpu",
) -> tuple[InspectionResult, Path]:
    """Inspects the attention of ``model`` with ``weights`` on ``data``'s validation images.

    Args:
        model: a registered model name with AW layers (``aw_resnet20_cifar``, ``aw_seresnet50``...).
        weights: ``.safetensors`` or a training checkpoint (``checkpoints/last.ckpt``), loaded strictly.
        data: a data specification (``mnist5k``, ``fashion-mnist``, ``cifar:DIR``...).
        out_dir: where the report goes.
        model_kwargs: the model's keyword arguments at training (``generator="lowrank"``...).
        images: validation images to inspect, drawn at random with ``seed`` (all when fewer).
        image_size: the image side the model was trained at (default per data set).
        batch_size: images per forward pass.
        workers: data loader processes.
        seed: chooses the images.
        draw: images whose attention is drawn.
        spectrum_images: images in the spectrum's sample.
        device: where the model runs (``"cpu"``, ``"cuda"``).

    Returns:
        ``(statistics, path of report.md)``.
    """
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' does not exist")
    for name, value in (("images", images), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    info = build_classification_data(data, image_size=image_size)
    network = create_classifier(
        model, num_classes=info.num_classes, in_chans=info.in_chans, model_kwargs=model_kwargs
    )
    load_weights(network, weights)
    chosen = torch.randperm(len(info.val), generator=torch.Generator().manual_seed(seed))[:images]
    loader = DataLoader(Subset(info.val, chosen.tolist()), batch_size=batch_size, num_workers=workers)
    _logger.info("inspecting %s on %d validation images of %s", model, len(chosen), data)
    result = attention_statistics(
        network.to(device), loader, draw=draw, spectrum_images=min(spectrum_images, max(2, len(chosen)))
    )
    arguments = ", ".join(f"{k}={v}" for k, v in (model_kwargs or {}).items())
    configuration = {
        "model": model + (f" ({arguments})" if arguments else ""),
        "weights": str(weights),
        "data": f"{data} at {info.image_size} px, validation split",
        "images": f"{result.images} of {len(info.val)}, drawn at random with seed {seed}",
        "top-1 on these images": "n/a" if result.top1 is None else f"{100 * result.top1:.2f}%",
        "spectrum": f"a random sample of {result.layers[0].spectrum_images} of these images",
        "per-image matrices": f"a random sample of {result.layers[0].matrix_images} of these images",
    }
    path = write_inspection_report(
        result,
        out_dir,
        title=f"Attention inspection: {model} on {data}",
        configuration=configuration,
        classes=info.classes,
    )
    return result, path
