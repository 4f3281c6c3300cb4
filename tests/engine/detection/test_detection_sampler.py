"""Aspect-ratio grouping: torchvision's bins, one group per batch, (seed, epoch) order, DDP shards."""

import random

import pytest
from torch.utils.data import SequentialSampler

from awconv.engine.detection.sampler import GroupedBatchSampler, aspect_ratio_groups
from awconv.engine.loaders import EpochSampler


def test_groups_are_torchvisions_bins() -> None:
    # factor 1: edges 1/2, 1, 2 -> four groups; factor 0: one edge at 1 (wide vs tall).
    ratios = [0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0]
    assert aspect_ratio_groups(ratios, 1) == [0, 1, 1, 2, 2, 3, 3]
    assert aspect_ratio_groups(ratios, 0) == [0, 0, 0, 1, 1, 1, 1]
    assert max(aspect_ratio_groups([0.1, 10.0], 3)) == 7
    with pytest.raises(ValueError, match="group factor must be an int >= 0, got -1"):
        aspect_ratio_groups(ratios, -1)


def test_batches_keep_to_one_group_and_the_order_of_the_sampler() -> None:
    groups = [0, 1, 0, 0, 1, 1, 0, 1, 0, 1]
    batches = list(GroupedBatchSampler(SequentialSampler(range(10)), groups, batch_size=2))
    assert batches[:4] == [[0, 2], [1, 4], [3, 6], [5, 7]]  # in the order each batch fills up
    # 10 // 2 = 5 batches: the left-over 8 is topped up from its own group's start; 9 waits.
    assert batches[4:] == [[8, 0]]
    # A group with fewer indices than a batch repeats them.
    assert list(GroupedBatchSampler(SequentialSampler(range(7)), [0, 1, 1, 1, 1, 0, 1], 3)) == [
        [1, 2, 3],
        [0, 5, 0],
    ]
    assert list(GroupedBatchSampler(SequentialSampler(range(3)), [0, 1, 1], batch_size=4)) == []


def test_every_epoch_is_a_permutation_fixed_by_seed_and_epoch_and_shards_are_disjoint() -> None:
    """Over the training loader's ``EpochSampler``: its ``(index, sample_seed)`` keys stay whole."""
    rng = random.Random(0)
    groups = [rng.randrange(3) for _ in range(50)]

    def epoch(seed: int, number: int, replicas: int = 1, rank: int = 0) -> list[list[tuple[int, int]]]:
        sampler = EpochSampler(range(50), seed=seed, num_replicas=replicas, rank=rank)
        batches = GroupedBatchSampler(sampler, groups, batch_size=4)
        batches.set_epoch(number)
        assert {key for batch in batches for key in batch} <= set(sampler)  # the sampler's own pairs
        return list(batches)

    first = epoch(seed=1, number=0)
    assert first == epoch(seed=1, number=0) != epoch(seed=1, number=1)
    assert first != epoch(seed=2, number=0)
    assert len(first) == 12 and all(len({groups[i] for i, _ in batch}) == 1 for batch in first)
    assert len({i for batch in first for i, _ in batch}) >= 48 - 3 * 3  # all but a few topped-up repeats
    shards = [epoch(seed=1, number=3, replicas=2, rank=rank) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert not {i for b in shards[0] for i, _ in b[:3]} & {i for b in shards[1] for i, _ in b[:3]}
