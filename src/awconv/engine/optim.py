"""Optimisers and learning-rate schedules for the training engines.

- ``param_groups``: weight decay on weights only, none on norms, biases and other 1-D parameters.
- ``build_optimizer``: ``"sgd"`` (momentum, Nesterov) or ``"adamw"``.
- ``build_scheduler``: ``"cosine"`` or ``"step"`` with a linear warm-up, stepped every iteration.
- ``warmup_multistep``: the detection schedule, a linear warm-up and decays at milestones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from awconv.engine.choices import OPTIMIZERS, SCHEDULES

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "build_optimizer",
    "build_scheduler",
    "param_groups",
    "warmup_multistep",
]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: parameters with 2+ dimensions decay, 1-D ones (norms, biases) do not."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, name: str, *, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW, without weight decay on norms and biases."""
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    step_every: int = 1,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration schedule: linear warm-up from 0, then cosine decay to 0 or step decay.

    Args:
        optimizer: its groups' ``lr`` is the peak learning rate.
        name: ``"cosine"`` or ``"step"``.
        total_steps: iterations of the whole run.
        warmup_steps: iterations of linear warm-up.
        step_every: for ``"step"``, iterations between decays by ``gamma``.
        gamma: for ``"step"``, the decay factor.
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps or step_every < 1:
        raise ValueError(
            f"need total_steps >= 1, 0 <= warmup_steps <= total_steps and step_every >= 1, got "
            f"total_steps={total_steps}, warmup_steps={warmup_steps}, step_every={step_every}"
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "step":
            return gamma ** (step // step_every)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_multistep(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    warmup_factor: float,
    milestones: Sequence[int],
    gamma: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration lr factor: linear from ``warmup_factor`` to 1, times ``gamma`` per milestone passed.

    Args:
        optimizer: its groups' ``lr`` is the base learning rate.
        warmup_steps: iterations of warm-up.
        warmup_factor: the factor at iteration 0.
        milestones: iterations after which the factor is multiplied by ``gamma``.
        gamma: the decay factor.
    """
    steps = sorted(milestones)

    def factor(step: int) -> float:
        warmup = 1.0
        if step < warmup_steps:
            warmup = warmup_factor + (1 - warmup_factor) * step / warmup_steps
        return warmup * gamma ** sum(step >= milestone for milestone in steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
