"""Aspect-ratio grouping of training batches, with the design of torchvision's detection references.

torchvision's ``references/detection/group_by_aspect_ratio.py`` (a script beside the package, not
part of its API) quantises every image's height / width into bins and fills each batch from one
bin only, so that the detector's batch tensor (padded to the largest image) wastes little on
padding; ``--aspect-ratio-group-factor 3`` is the default of its Faster and Mask R-CNN recipes.
mmdetection's ``AspectRatioBatchSampler`` does the same with two bins (wide and tall).

``aspect_ratio_groups`` computes the bins and ``GroupedBatchSampler`` forms the batches; it wraps
any sampler, such as ``awconv.engine.loaders.EpochSampler`` (whose keys are ``(index, sample_seed)``
pairs), and passes ``set_epoch`` on to it, so the batches of an epoch depend on the wrapped
sampler's ``(seed, epoch)`` alone.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["GroupedBatchSampler", "aspect_ratio_groups"]


def aspect_ratio_groups(aspect_ratios: Sequence[float], factor: int) -> list[int]:
    """The group of every image: its height / width quantised into ``2 * factor + 2`` bins.

    The bin edges are ``2 ** linspace(-1, 1, 2 * factor + 1)`` (ratios 1/2 to 2, evenly spaced in
    log), or the single edge 1.0 (wide vs tall) for ``factor`` 0, as in torchvision's references.

    Args:
        aspect_ratios: height / width per image.
        factor: the grouping factor, >= 0.

    Returns:
        A group id in ``[0, 2 * factor + 2)`` per image.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 0:
        raise ValueError(f"aspect-ratio group factor must be an int >= 0, got {factor!r}")
    edges = (2 ** np.linspace(-1, 1, 2 * factor + 1)).tolist() if factor > 0 else [1.0]
    return [bisect.bisect_right(edges, ratio) for ratio in aspect_ratios]


class GroupedBatchSampler(Sampler[list[Hashable]]):
    """Batches whose keys share a group, in the order the wrapped sampler yields them.

    Each key the sampler yields joins its group's buffer; a full buffer is a batch. When the
    sampler is exhausted, the fullest partial buffers are topped up with earlier keys of their
    own group until ``len(sampler) // batch_size`` batches are out, so every epoch has the same
    number of batches and no batch mixes groups.

    Args:
        sampler: yields dataset indices, or ``(index, sample_seed)`` pairs (``EpochSampler``, a
            ``DistributedSampler`` for a shard of the set); a key's group is its index's.
        group_ids: the group of every dataset index (``aspect_ratio_groups``).
        batch_size: indices per batch.
    """

    def __init__(
        self, sampler: Sampler[int] | Sampler[tuple[int, int]], group_ids: Sequence[int], batch_size: int
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        """Passes the epoch on to the wrapped sampler (a ``DistributedSampler`` reshuffles with it)."""
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[Hashable]]:
        buffers: dict[int, list[Hashable]] = defaultdict(list)
        seen: dict[int, list[Hashable]] = defaultdict(list)
        produced = 0
        for key in self.sampler:
            group = self.group_ids[key[0] if isinstance(key, tuple) else key]
            buffers[group].append(key)
            seen[group].append(key)
            if len(buffers[group]) == self.batch_size:
                yield buffers.pop(group)
                produced += 1
        for group, buffer in sorted(buffers.items(), key=lambda item: len(item[1]), reverse=True):
            if produced == len(self):
                break
            missing = self.batch_size - len(buffer)
            # A group smaller than the batch repeats its keys (torchvision's _repeat_to_at_least).
            repeats = -(-missing // len(seen[group]))
            yield buffer + (seen[group] * repeats)[:missing]
            produced += 1

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size
