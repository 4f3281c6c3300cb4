"""``ClassificationDataModule``: the data loaders of a classification run."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from awconv.data.classification import ClassificationData, build_classification_data

__all__ = ["ClassificationDataModule"]


class ClassificationDataModule(pl.LightningDataModule):
    """Loaders over ``build_classification_data(spec)``; the sets are built when constructed.

    Under DDP Lightning gives each process its shard with a ``DistributedSampler``.

    Args:
        spec: ``imagefolder:DIR``, ``cifar:DIR``, ``mnist5k`` or ``digits``, or built data.
        batch_size: images per process and step.
        num_workers: loader processes (0 loads in the main process).
        image_size: side of the images; default per data set.
    """

    def __init__(
        self,
        spec: str | ClassificationData,
        *,
        batch_size: int,
        num_workers: int = 0,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        self.data = (
            spec
            if isinstance(spec, ClassificationData)
            else build_classification_data(spec, image_size=image_size)
        )
        self.batch_size = batch_size
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data.val, shuffle=False)

    def _loader(self, dataset, *, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # page-locked batches copy to a GPU asynchronously
        )
