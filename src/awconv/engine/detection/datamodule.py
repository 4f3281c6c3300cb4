"""``DetectionDataModule``: the COCO-format loaders of a detection run."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from awconv.data.coco import coco_detection, collate_detection
from awconv.engine.loaders import training_loader

__all__ = ["DetectionDataModule"]


class DetectionDataModule(pl.LightningDataModule):
    """COCO-format training and validation sets, built and validated on construction.

    Args:
        val: ``(images_dir, annotations_json)`` for evaluation.
        train: the same for training, or ``None`` for evaluation only.
        batch_size: images per process and step.
        workers: data-loading worker processes.
        min_size: training images' shorter side.
        max_size: training images' longer side cap.
        seed: seeds the training order and augmentation, which depend on it and the epoch alone
            (``awconv.engine.loaders``), so a resumed run replays them for any ``workers``.
        start_epoch: the first epoch trained (a resumed run's, ``awconv.engine.trainer.resume_epoch``).
    """

    def __init__(
        self,
        val: tuple[str | Path, str | Path],
        train: tuple[str | Path, str | Path] | None = None,
        *,
        batch_size: int = 2,
        workers: int = 2,
        min_size: int = 800,
        max_size: int = 1333,
        seed: int = 0,
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.start_epoch = start_epoch
        self.val_set = coco_detection(*val, train=False)
        self.train_set = (
            coco_detection(*train, train=True, min_size=min_size, max_size=max_size) if train else None
        )
        self.categories: dict[int, str] = (self.train_set or self.val_set).categories

    @property
    def num_classes(self) -> int:
        """Largest category id + 1 (index 0 is the background)."""
        return max(self.categories) + 1

    def _loader(self, dataset: torch.utils.data.Dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=collate_detection,
            persistent_workers=self.workers > 0,
            # Its workers' base seed comes from here, not from the process-wide generator the model uses.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise ValueError("no training data: pass train=(images_dir, annotations_json)")
        trainer = self.trainer
        return training_loader(
            self.train_set,
            batch_size=self.batch_size,
            seed=self.seed,
            workers=self.workers,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            epoch=self.start_epoch,
            collate_fn=collate_detection,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
