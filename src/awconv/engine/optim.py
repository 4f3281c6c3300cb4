"""Optimisers and learning-rate schedules for the training engines.

- ``param_groups``: weight decay on weights only, none on norms, biases and other 1-D parameters.
- ``build_optimizer``: ``"sgd"`` (momentum, Nesterov), ``"adamw"``, ``"lamb"`` or ``"lars"`` from
  ``timm.optim.create_optimizer_v2``, with timm's layer-wise learning-rate decay.
- ``build_scheduler``: ``"cosine"`` or ``"step"`` with a linear warm-up from a starting learning
  rate, down to a minimum learning rate, stepped every iteration.
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
    model: nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: Sequence[float] | None = None,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """An optimiser from ``timm.optim.create_optimizer_v2``, without weight decay on norms and biases.

    Without ``layer_decay`` its groups are ``param_groups(model, weight_decay)``; with it, timm's
    groups per layer (each split into decayed and not).

    Args:
        model: the network; with ``layer_decay`` its ``group_matcher`` (every timm and awconv model
            has one) orders its layers from the input to the classifier.
        name: ``"sgd"`` (Nesterov momentum; plain SGD when ``momentum`` is 0), ``"adamw"``,
            ``"lamb"`` or ``"lars"``.
        lr: the peak learning rate (of the last layer, with ``layer_decay``).
        weight_decay: decay of parameters with 2+ dimensions.
        momentum: SGD and LARS momentum.
        betas: Adam-style ``(beta1, beta2)`` for ``"adamw"`` and ``"lamb"``; ``None``: the optimiser's.
        layer_decay: each layer's learning rate is ``lr * layer_decay ** (depth - layer)``, as timm's
            ``--layer-decay``; each group's ``lr`` holds it (and ``lr_scale`` the factor).

    Raises:
        ValueError: an unknown ``name``, or ``layer_decay`` for a model without layer groups.
    """
    from timm.optim import create_optimizer_v2

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    kwargs: dict = {}
    if name in ("sgd", "lars"):
        kwargs["momentum"] = momentum
    if betas is not None and name in ("adamw", "lamb"):
        kwargs["betas"] = tuple(betas)
    timm_name = "momentum" if name == "sgd" and momentum == 0 else name
    # Without layer decay, our two groups (decay first, as checkpoints of earlier runs hold them).
    params = model if layer_decay is not None else param_groups(model, weight_decay)
    optimizer = create_optimizer_v2(
        params, timm_name, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, **kwargs
    )
    scales = {group.get("lr_scale", 1.0) for group in optimizer.param_groups}
    if layer_decay is not None and len(scales) == 1:
        raise ValueError(
            f"--layer-decay {layer_decay}: {type(model).__name__} has no layers to decay (no timm "
            "group_matcher), every parameter would get the same lr; use a timm or awconv model"
        )
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return optimizer


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    step_every: int = 1,
    gamma: float = 0.1,
    warmup_factor: float = 0.0,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration schedule: linear warm-up, then cosine or step decay, relative to each group's lr.

    Each group's learning rate at step ``t`` is its ``lr`` (the peak) times a factor: during the
    warm-up ``w + (1 - w) (t + 1) / warmup_steps`` (``w = warmup_factor``), then for ``"cosine"``
    ``m + (1 - m) (1 + cos(pi p)) / 2`` with ``p`` the progress after the warm-up
    (``m = min_factor``), for ``"step"`` ``max(m, gamma ** (t // step_every))``.

    Args:
        optimizer: its groups' ``lr`` is the peak learning rate.
        name: ``"cosine"`` or ``"step"``.
        total_steps: iterations of the whole run.
        warmup_steps: iterations of linear warm-up.
        step_every: for ``"step"``, iterations between decays by ``gamma``.
        gamma: for ``"step"``, the decay factor.
        warmup_factor: where the warm-up starts, relative to the peak (``--warmup-lr / --lr``).
        min_factor: where the decay ends, relative to the peak (``--min-lr / --lr``).
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
            return warmup_factor + (1 - warmup_factor) * (step + 1) / warmup_steps
        if name == "step":
            return max(min_factor, gamma ** (step // step_every))
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

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
