"""Mixup and CutMix of training batches with torchvision.transforms.v2, giving soft targets.

``batch_mixer(mixup, cutmix, switch_prob, num_classes)`` returns a callable ``(images, labels) ->
(images, targets)``: ``v2.MixUp`` or ``v2.CutMix`` (both mix each image with the next one in the
batch, ``images.roll(1, 0)``, with one ``lam ~ Beta(alpha, alpha)`` per batch), chosen per batch
with ``switch_prob`` for CutMix when both are on, as timm's ``--mixup-switch-prob``. The targets
are ``lam * one_hot(labels) + (1 - lam) * one_hot(labels.roll(1))``, rows summing to one, for
``F.cross_entropy`` with probability targets. Validation batches are never mixed.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torchvision.transforms import v2

__all__ = ["batch_mixer"]


def batch_mixer(
    mixup: float, cutmix: float, switch_prob: float, num_classes: int
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
    """The mixing of a batch, or ``None`` when both alphas are 0.

    Args:
        mixup: Mixup's Beta alpha; 0 turns it off.
        cutmix: CutMix's Beta alpha; 0 turns it off.
        switch_prob: with both on, the probability that a batch gets CutMix rather than Mixup.
        num_classes: the targets' width.

    The callable takes ``images (N, C, H, W)`` float and ``labels (N,)`` int64 and returns the mixed
    images ``(N, C, H, W)`` and targets ``(N, num_classes)``.
    """
    mixers = []
    weights = []
    if mixup > 0:
        mixers.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        weights.append(1 - switch_prob if cutmix > 0 else 1.0)
    if cutmix > 0:
        mixers.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        weights.append(switch_prob if mixup > 0 else 1.0)
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers, p=weights)
