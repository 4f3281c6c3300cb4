"""``ClassificationDataModule``: the data loaders of a classification run."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from awconv.data.augment import Augmentation
from awconv.data.classification import ClassificationData, build_classification_data
from awconv.engine.loaders import check_splits, training_loader

__all__ = ["ClassificationDataModule"]


class ClassificationDataModule(pl.LightningDataModule):
    """Loaders over ``build_classification_data(spec)``; the sets are built when constructed.

    The training batches depend on ``seed`` and the epoch alone (``awconv.engine.loaders``), so a
    resumed run replays them for any ``num_workers``. Under DDP each process takes its shard of the
    training set; Lightning shards the validation set.

    Args:
        spec: a data specification (``awconv.data.classification.DATA_SOURCES``) or built data.
        batch_size: images per process and step.
        num_workers: loader processes (0 loads in the main process).
        image_size: side of the images; default per data set.
        augmentation: added to the data set's augmentation when ``spec`` is a specification; with
            a timm RandAugment policy, the loader seeds Python's and NumPy's generators per sample.
        seed: seeds the training order and augmentation.
        start_epoch: the first epoch trained (a resumed run's, ``awconv.engine.trainer.resume_epoch``).
    """

    def __init__(
        self,
        spec: str | ClassificationData,
        *,
        batch_size: int,
        num_workers: int = 0,
        image_size: int | None = None,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        self.spec = spec if isinstance(spec, str) else "the data"
        self.data = (
            spec
            if isinstance(spec, ClassificationData)
            else build_classification_data(spec, image_size=image_size, augmentation=augmentation)
        )
        self.host_random = augmentation is not None and augmentation.host_random
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.start_epoch = start_epoch

    def check(self) -> None:
        """Reads one sample of each split: an empty or unreadable split fails before training."""
        check_splits({"training": self.data.train, "validation": self.data.val}, f"--data {self.spec}")

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        return training_loader(
            self.data.train,
            batch_size=self.batch_size,
            seed=self.seed,
            workers=self.num_workers,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            epoch=self.start_epoch,
            host_generators=self.host_random,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.data.val,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # page-locked batches copy to a GPU asynchronously
            # Its workers' base seed comes from here, not from the process-wide generator the model uses.
            generator=torch.Generator().manual_seed(self.seed),
        )
