"""``DetectionDataModule``: the COCO-format loaders of a detection run, sharded for DDP.

Training batches come from ``awconv.engine.loaders.EpochSampler`` (a ``DistributedSampler``; one
process: a shard of one, the whole set) and every sample's augmentation from its own seed, both
functions of ``(seed, epoch)`` alone, so a resumed run replays them for any ``workers``; the
batches are grouped by aspect ratio as torchvision's references do
(``awconv.engine.detection.sampler``). Validation runs one image per step by default: with
several images of different sizes in a batch, torchvision's detector pads them to one tensor, and
the padding changes what the network computes near the images' right and bottom edges (and what
every AW layer pools), so the figures would depend on the batch size. Validation shards are
padded to equal length; ``CocoMeanAveragePrecision`` counts each image once.

The module shards both loaders itself, so the trainer runs with ``use_distributed_sampler=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from awconv.data.coco import aspect_ratios, coco_detection, collate_detection
from awconv.engine.detection.sampler import GroupedBatchSampler, aspect_ratio_groups
from awconv.engine.loaders import EpochSampler, SeededSamples

__all__ = ["DetectionDataModule"]


def _positive_int(name: str, value: int, smallest: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"{name} must be an int >= {smallest}, got {value!r}")


class DetectionDataModule(pl.LightningDataModule):
    """COCO-format training and validation sets, built and checked on construction.

    Args:
        val: ``(images_dir, annotations_json)`` for evaluation.
        train: the same for training, or ``None`` for evaluation only.
        batch_size: training images per process and step.
        val_batch_size: evaluation images per process and step (1: figures independent of it).
        workers: data-loading worker processes.
        categories: category id -> name in label order, a trained model's; ``None``: the training
            json's (or, without training data, the validation json's) sorted by id. The
            validation set uses the training set's.
        masks: load instance masks, for Mask R-CNN.
        aspect_ratio_group_factor: group training batches by aspect ratio into
            ``2 * factor + 2`` bins (torchvision's default 3); -1 batches images in sampler order.
        seed: seeds the training order and augmentation, which depend on it and the epoch alone
            (``awconv.engine.loaders``).
        start_epoch: the first epoch trained (a resumed run's, ``awconv.engine.trainer.resume_epoch``).
    """

    def __init__(
        self,
        val: tuple[str | Path, str | Path],
        train: tuple[str | Path, str | Path] | None = None,
        *,
        batch_size: int = 2,
        val_batch_size: int = 1,
        workers: int = 2,
        categories: Mapping[int, str] | None = None,
        masks: bool = False,
        aspect_ratio_group_factor: int = 3,
        seed: int = 0,
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        _positive_int("batch_size", batch_size)
        _positive_int("val_batch_size", val_batch_size)
        _positive_int("workers", workers, 0)
        _positive_int("aspect_ratio_group_factor", aspect_ratio_group_factor, -1)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.workers = workers
        self.seed = seed
        self.start_epoch = start_epoch
        self.train_set = (
            coco_detection(*train, train=True, categories=categories, masks=masks) if train else None
        )
        if self.train_set is not None:
            categories = self.train_set.categories
        self.val_set = coco_detection(*val, train=False, categories=categories, masks=masks)
        self.categories: dict[int, str] = self.val_set.categories
        self.group_ids = (
            aspect_ratio_groups(aspect_ratios(self.train_set), aspect_ratio_group_factor)
            if self.train_set is not None and aspect_ratio_group_factor >= 0
            else None
        )

    @property
    def num_classes(self) -> int:
        """Categories + 1 (label 0 is the background)."""
        return len(self.categories) + 1

    def _replicas(self) -> tuple[int, int]:
        """The trainer's process count and this process's rank (one process without a trainer)."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, dataset: torch.utils.data.Dataset, **batching) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.workers,
            collate_fn=collate_detection,
            persistent_workers=self.workers > 0,
            # Its workers' base seed comes from here, not from the process-wide generator the model uses.
            generator=torch.Generator().manual_seed(self.seed),
            **batching,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise ValueError("no training data: pass train=(images_dir, annotations_json)")
        replicas, rank = self._replicas()
        sampler = EpochSampler(self.train_set, seed=self.seed, num_replicas=replicas, rank=rank)
        sampler.set_epoch(self.start_epoch)
        batches = (
            GroupedBatchSampler(sampler, self.group_ids, self.batch_size)
            if self.group_ids is not None
            else BatchSampler(sampler, self.batch_size, drop_last=True)
        )
        if len(batches) == 0:
            raise ValueError(
                f"the training set's {len(self.train_set)} usable images make no batch of {self.batch_size} "
                f"images in each of {replicas} process(es); lower --batch-size"
            )
        return self._loader(SeededSamples(self.train_set), batch_sampler=batches)

    def val_dataloader(self) -> DataLoader:
        replicas, rank = self._replicas()
        shard = DistributedSampler(self.val_set, num_replicas=replicas, rank=rank, shuffle=False)
        return self._loader(self.val_set, batch_size=self.val_batch_size, sampler=shard)
