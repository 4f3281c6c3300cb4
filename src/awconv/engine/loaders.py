"""Training loaders whose batches are a function of (seed, epoch) alone, so a resumed run sees the same.

A run resumed from a checkpoint must draw the batches an uninterrupted run would have drawn. Two
things usually break that: the order comes from the process-wide random generator (restored, but
also consumed by the model), and each loader worker carries its own augmentation stream across
epochs (``persistent_workers``) that a restarted worker does not continue. Here neither happens:

- ``EpochSampler`` permutes the training set with a generator seeded by ``(seed, epoch)`` and pairs
  every position with its own sample seed drawn from the same generator. It is a
  ``DistributedSampler``, so under DDP each process takes its shard and Lightning leaves it alone.
- ``SeededSamples`` runs each ``__getitem__`` with torch's CPU generator seeded by the sample seed
  (torchvision's transforms draw from it), and with ``host_generators`` Python's and NumPy's global
  generators too (timm's RandAugment draws from those; seeding them costs more than the
  augmentation of a small image, so only runs that need it pay), and restores them afterwards.

The batches therefore do not depend on ``--workers``, on worker restarts, or on what the model
drew from the generator. ``training_loader`` builds the loader; ``check_splits`` reads one sample
of each split before training so that an unreadable split fails before the first epoch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochSampler", "SeededSamples", "check_splits", "training_loader"]

_logger = logging.getLogger(__name__)


class EpochSampler(DistributedSampler):
    """Yields ``(index, sample_seed)`` pairs: a permutation and per-position seeds from ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch. Padding and sharding are ``DistributedSampler``'s
    (the permutation is padded by repeating its start to a multiple of ``num_replicas``; process
    ``rank`` takes every ``num_replicas``-th position).

    Args:
        dataset: the training set (its length is used).
        seed: the run's seed, a non-negative int.
        num_replicas: processes sharing the set.
        rank: this process's index among them.
    """

    def __init__(self, dataset: Dataset, *, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        size = len(self.dataset)
        order = rng.permutation(size)
        if self.total_size > size:
            order = np.resize(order, self.total_size)
        seeds = rng.integers(0, 2**32, size=self.total_size)  # torch's generator keeps 32 bits of a seed
        positions = range(self.rank, self.total_size, self.num_replicas)
        return ((int(order[p]), int(seeds[p])) for p in positions)


class SeededSamples(Dataset):
    """``dataset[index]`` computed with torch's CPU generator seeded by the sample seed.

    Args:
        dataset: a map-style data set.
        host_generators: seed Python's and NumPy's global generators too (for transforms that draw
            from them, such as timm's RandAugment).

    ``samples[(index, sample_seed)]`` returns ``dataset[index]``; the generators' states before the call
    are restored after it, so the caller's random stream (the model's, with ``--workers 0``) goes on
    untouched.
    """

    def __init__(self, dataset: Dataset, *, host_generators: bool = False) -> None:
        self.dataset = dataset
        self.host_generators = host_generators

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, sample_seed = key
        state = torch.get_rng_state()
        host_states = (random.getstate(), np.random.get_state()) if self.host_generators else None
        torch.default_generator.manual_seed(sample_seed)
        if host_states is not None:
            random.seed(sample_seed)
            np.random.seed(sample_seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)
            if host_states is not None:
                random.setstate(host_states[0])
                np.random.set_state(host_states[1])


def training_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    workers: int,
    num_replicas: int = 1,
    rank: int = 0,
    epoch: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    host_generators: bool = False,
) -> DataLoader:
    """A shuffled, augmented training loader that a resumed run replays exactly.

    A process's shard larger than ``batch_size`` drops its last partial batch; a smaller one gives
    one smaller batch per epoch, with a warning naming ``--batch-size``.

    Args:
        dataset: the training set (map-style).
        batch_size: samples per process and step.
        seed: the run's seed.
        workers: loader processes (0 loads in the calling process).
        num_replicas: processes (DDP world size).
        rank: this process's global rank.
        epoch: the first epoch the loader serves (a resumed run's); Lightning sets the later ones.
        collate_fn: batches a list of samples (default: torch's).
        host_generators: seed Python's and NumPy's generators per sample too (``SeededSamples``).
    """
    sampler = EpochSampler(dataset, seed=seed, num_replicas=num_replicas, rank=rank)
    sampler.set_epoch(epoch)
    shard = sampler.num_samples
    if shard < batch_size:
        share = "the training set"
        if num_replicas > 1:
            share = f"each of {num_replicas} processes' share of {share}"
        _logger.warning(
            "--batch-size %d is larger than %s (%d of %d samples): one batch of %d per process and epoch",
            batch_size,
            share,
            shard,
            len(dataset),
            shard,
        )
    return DataLoader(
        SeededSamples(dataset, host_generators=host_generators),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=shard > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=collate_fn,
        # The workers' base seed is drawn from this generator, not from the process-wide one.
        generator=torch.Generator().manual_seed(seed),
    )


def check_splits(splits: Mapping[str, Dataset], source: str) -> None:
    """Reads the first sample of every split, so that an unreadable or empty split fails now.

    The process-wide generator is left as it was (an augmented sample draws from it).

    Args:
        splits: split name (``"training"``, ``"validation"``) -> data set.
        source: what the splits come from, named in the error (``--data imagefolder:/data``).

    Raises:
        ValueError: a split is empty or its first sample cannot be read (the split and the cause named).
    """
    for name, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {name} split of {source} is empty")
        try:
            with torch.random.fork_rng(devices=[]):  # the check draws nothing from the run's stream
                dataset[0]
        except (OSError, ValueError, RuntimeError) as error:
            detail = (str(error).splitlines() or [type(error).__name__])[0]
            raise ValueError(f"the {name} split of {source} cannot be read: {detail}") from error
