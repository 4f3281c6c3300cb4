"""The detection training recipe: named schedules with their sources, parameter groups, the lr curve.

Schedules (epochs, and the epochs after which the learning rate drops by 10), all at lr 0.02 for
16 images per step, SGD momentum 0.9, weight decay 1e-4:

- ``1x``: 12 epochs, decay after 8 and 11. Detectron's 1x (90k iterations at batch 16, steps at
  60k and 80k, about epochs 8.2 and 10.9 of COCO train2017); mmdetection's ``schedule_1x.py``.
- ``2x``: 24 epochs, decay after 16 and 22. Detectron's 2x (180k, steps 120k and 160k);
  mmdetection's ``schedule_2x.py``.
- ``3x``: 36 epochs, decay after 27 and 33. mmdetection's ``common/ms_3x_coco.py`` (12 epochs of a
  3x repeated set, decay after 9 and 11); Detectron2's 3x is 270k iterations, steps 210k and 250k.
- ``torchvision``: 26 epochs, decay after 16 and 22: torchvision's detection references for
  Faster and Mask R-CNN (``--epochs 26 --lr-steps 16 22 --aspect-ratio-group-factor 3``).

The warm-up is linear over the first iterations from ``warmup_factor`` (Detectron and torchvision:
1000 iterations from 1/1000; mmdetection: 500).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from awconv.engine.optim import warmup_multistep

__all__ = ["SCHEDULES", "Schedule", "detection_lr_schedule", "detection_param_groups", "resolve_schedule"]


class Schedule(NamedTuple):
    """Epochs of training and the epochs after which the learning rate drops by ``gamma``."""

    epochs: int
    milestones: tuple[int, ...]


SCHEDULES = {
    "1x": Schedule(12, (8, 11)),
    "2x": Schedule(24, (16, 22)),
    "3x": Schedule(36, (27, 33)),
    "torchvision": Schedule(26, (16, 22)),
}
# Normalisation layers, whose parameters get ``norm_weight_decay`` (torchvision's
# ``split_normalization_params`` uses the same classes).
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def resolve_schedule(
    name: str, epochs: int | None = None, milestones: Sequence[int] | None = None
) -> Schedule:
    """A named schedule, with ``epochs`` or ``milestones`` replaced where given."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    default = SCHEDULES[name]
    epochs = default.epochs if epochs is None else epochs
    milestones = default.milestones if milestones is None else tuple(milestones)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones):
        raise ValueError(f"milestones must be epochs >= 1, got {list(milestones)}")
    return Schedule(epochs, tuple(sorted(milestones)))


def detection_param_groups(model: nn.Module, weight_decay: float, norm_weight_decay: float) -> list[dict]:
    """Groups of trainable parameters: weights, normalisation layers', and biases (no decay); none empty.

    Args:
        model: the detector.
        weight_decay: decay of weights with 2+ dimensions (convolutions, linear layers).
        norm_weight_decay: decay of the weights and biases of normalisation layers (BatchNorm,
            GroupNorm, LayerNorm), torchvision's ``--norm-weight-decay``; 0 by default here.

    Other 1-D parameters (biases of convolutions and linear layers) get no decay.
    """
    norm_ids = {
        id(param) for module in model.modules() if isinstance(module, _NORMS) for param in module.parameters()
    }
    weights, norms, others = [], [], []
    for param in model.parameters():
        if param.requires_grad:
            (norms if id(param) in norm_ids else weights if param.ndim > 1 else others).append(param)
    groups = [(weights, weight_decay), (norms, norm_weight_decay), (others, 0.0)]
    return [{"params": params, "weight_decay": decay} for params, decay in groups if params]


def detection_lr_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    total_steps: int,
    warmup_iters: int,
    warmup_factor: float,
    milestones: Sequence[int],
    gamma: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-iteration learning-rate factor: linear warm-up, then ``gamma`` after each milestone epoch.

    Args:
        optimizer: its groups' ``lr`` is the base learning rate.
        steps_per_epoch: optimiser steps per epoch.
        total_steps: optimiser steps of the whole run (the warm-up is at most this long).
        warmup_iters: iterations of warm-up.
        warmup_factor: the factor at the first iteration.
        milestones: epochs after which the factor is multiplied by ``gamma``.
        gamma: the decay factor.
    """
    return warmup_multistep(
        optimizer,
        warmup_steps=min(warmup_iters, total_steps),
        warmup_factor=warmup_factor,
        milestones=[epoch * steps_per_epoch for epoch in milestones],
        gamma=gamma,
    )
