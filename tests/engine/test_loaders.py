"""Training loaders: batches from (seed, epoch) alone, for any worker count and under sharding."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import Dataset

from awconv.engine.loaders import EpochSampler, SeededSamples, check_splits, training_loader


class _Noisy(Dataset):
    """Sample i is i plus fresh noise from torch's generator: its value shows the stream it drew from."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return index + torch.rand(3)


def _batches(loader, epoch: int) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    return [batch.clone() for batch in loader]


def test_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    dataset = _Noisy(10)
    first = list(EpochSampler(dataset, seed=3))
    torch.manual_seed(123)  # the process-wide generator has no say
    assert list(EpochSampler(dataset, seed=3)) == first
    assert sorted(index for index, _ in first) == list(range(10))
    other_epoch = EpochSampler(dataset, seed=3)
    other_epoch.set_epoch(1)
    other_seed = EpochSampler(dataset, seed=4)
    assert list(other_epoch) != first and list(other_seed) != first
    # (seed, epoch) pairs are not mixed by addition: seed 3 epoch 1 is not seed 4 epoch 0.
    assert list(other_epoch) != list(other_seed)


def test_shards_split_the_padded_permutation() -> None:
    dataset = _Noisy(7)
    whole = list(EpochSampler(dataset, seed=0, num_replicas=1))
    shards = [list(EpochSampler(dataset, seed=0, num_replicas=2, rank=rank)) for rank in (0, 1)]
    order = [index for index, _ in whole]
    assert [index for index, _ in shards[0]] == order[0::2]
    assert [index for index, _ in shards[1]] == [*order[1::2], order[0]]  # padded with the first


def test_seeded_samples_repeat_and_leave_the_callers_stream_alone() -> None:
    samples = SeededSamples(_Noisy(4))
    torch.manual_seed(0)
    expected_next = torch.rand(2)
    torch.manual_seed(0)
    first = samples[(2, 99)]
    assert torch.equal(torch.rand(2), expected_next)  # the caller's stream went on untouched
    assert torch.equal(samples[(2, 99)], first) and not torch.equal(samples[(2, 98)], first)


@pytest.mark.parametrize("workers", [2])
def test_batches_are_the_same_for_any_worker_count(workers: int) -> None:
    dataset = _Noisy(12)
    in_process = training_loader(dataset, batch_size=4, seed=5, workers=0)
    with_workers = training_loader(dataset, batch_size=4, seed=5, workers=workers)
    for epoch in (0, 1):
        expected = _batches(in_process, epoch)
        assert len(expected) == 3
        got = _batches(with_workers, epoch)
        assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True)), epoch
    restarted = training_loader(dataset, batch_size=4, seed=5, workers=workers, epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(_batches(in_process, 1), list(restarted), strict=True))


def test_a_shard_smaller_than_the_batch_is_one_batch_and_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        loader = training_loader(_Noisy(60), batch_size=40, seed=0, workers=0, num_replicas=2, rank=1)
    batches = list(loader)
    assert [len(batch) for batch in batches] == [30]
    assert "--batch-size 40 is larger than each of 2 processes' share" in caplog.text
    full = training_loader(_Noisy(60), batch_size=25, seed=0, workers=0, num_replicas=2, rank=0)
    assert [len(batch) for batch in full] == [25]  # the partial batch of 5 is dropped


def test_check_splits_names_the_split() -> None:
    class Broken(_Noisy):
        def __getitem__(self, index: int) -> torch.Tensor:
            raise ValueError("no image under '/data/val' could be read")

    check_splits({"training": _Noisy(2), "validation": _Noisy(1)}, "--data x")
    with pytest.raises(ValueError, match=r"the validation split of --data x cannot be read: no image under"):
        check_splits({"training": _Noisy(2), "validation": Broken(1)}, "--data x")
    with pytest.raises(ValueError, match="the training split of --data x is empty"):
        check_splits({"training": _Noisy(0)}, "--data x")


def test_sampler_rejects_a_negative_seed() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        EpochSampler(_Noisy(2), seed=-1)
