"""Training loaders: batches from (seed, epoch) alone, for any worker count and under sharding."""

from __future__ import annotations

import logging
import random

import numpy as np
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


def test_sampler_refuses_seeds_that_are_not_ints() -> None:
    for seed in (True, "1", 1.0):
        with pytest.raises(ValueError, match=rf"^seed must be a non-negative int, got {seed!r}$"):
            EpochSampler(_Noisy(2), seed=seed)


def test_sample_seeds_are_distinct_32_bit_numbers() -> None:
    """torch's generator keeps 32 bits of a seed: wider seeds would collide there, narrow ones here."""
    seeds = [seed for _, seed in EpochSampler(_Noisy(500), seed=3)]
    assert len(set(seeds)) == 500 and max(seeds) < 2**32 and max(seeds) > 2**31


def test_loader_options_reach_the_data_loader(caplog) -> None:
    def collate(samples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(samples)

    with caplog.at_level(logging.WARNING):
        loader = training_loader(
            _Noisy(8), batch_size=4, seed=7, workers=1, num_replicas=2, rank=1, collate_fn=collate
        )
        inline = training_loader(_Noisy(8), batch_size=4, seed=7, workers=0)
    assert not caplog.records  # a shard of exactly one batch needs no warning
    assert loader.persistent_workers is True and inline.persistent_workers is False
    assert loader.collate_fn is collate and loader.generator.initial_seed() == 7
    assert loader.sampler.rank == 1 and loader.sampler.epoch == 0 and loader.sampler.shuffle is True
    expected = [index for index, _ in EpochSampler(_Noisy(8), seed=7, num_replicas=2, rank=1)]
    assert [index for index, _ in loader.sampler] == expected


def test_one_process_warning_names_the_training_set(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        training_loader(_Noisy(3), batch_size=4, seed=0, workers=0)
    assert [r.getMessage() for r in caplog.records] == [
        "--batch-size 4 is larger than the training set (3 of 3 samples): one batch of 3 per process and "
        "epoch"
    ]


def test_check_splits_reads_the_first_sample_and_names_a_bare_error() -> None:
    class FirstBroken(_Noisy):
        def __getitem__(self, index: int) -> torch.Tensor:
            if index == 0:
                raise OSError
            return super().__getitem__(index)

    with pytest.raises(ValueError, match=r"^the training split of --data x cannot be read: OSError$"):
        check_splits({"training": FirstBroken(2)}, "--data x")


class _HostNoisy(Dataset):
    """Sample i is i plus one draw from Python's and one from NumPy's global generator."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float]:
        return index + random.random(), index + float(np.random.random())


def test_host_generators_are_seeded_per_sample_only_when_asked() -> None:
    random.seed(1)
    np.random.seed(1)
    expected_next = (random.random(), float(np.random.random()))
    random.seed(1)
    np.random.seed(1)
    seeded = SeededSamples(_HostNoisy(), host_generators=True)
    first = seeded[(2, 99)]
    assert (random.random(), float(np.random.random())) == expected_next  # the caller's streams went on
    assert seeded[(2, 99)] == first and seeded[(2, 98)] != first
    random.seed(99)
    np.random.seed(99)
    assert first == (2 + random.random(), 2 + float(np.random.random()))  # drawn after seeding by 99

    random.seed(1)
    np.random.seed(1)
    plain = SeededSamples(_HostNoisy())[(2, 99)]  # the default leaves Python and NumPy alone
    assert plain == (2 + expected_next[0], 2 + expected_next[1])


@pytest.mark.parametrize("host_generators", [False, True])
def test_training_loader_passes_host_generators_on(host_generators: bool) -> None:
    loader = training_loader(_Noisy(4), batch_size=2, seed=0, workers=0, host_generators=host_generators)
    assert loader.dataset.host_generators is host_generators
    assert training_loader(_Noisy(4), batch_size=2, seed=0, workers=0).dataset.host_generators is False
