"""Detection training on Lightning: Faster R-CNN by name, the 1x recipe, COCO box mAP.

``DetectorModule`` trains any registered ``fasterrcnn_{backbone}_fpn`` with SGD, a linear warm-up
and a step schedule (torchvision's reference 1x recipe for COCO: lr 0.02 at batch 16, momentum 0.9,
weight decay 1e-4, 1000 warm-up iterations from lr/1000, decay by 10 after epochs 8 and 11 of
12) and reports COCO box AP through torchmetrics' ``MeanAveragePrecision`` (pycocotools backend).
``awconv.engine.detection.datamodule.DetectionDataModule`` feeds it COCO-format data. Trainer,
checkpoints and logs come from ``awconv.engine.trainer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from awconv.detection import create_detector
from awconv.engine.optim import param_groups, warmup_multistep

__all__ = ["METRIC_NAMES", "DetectorModule"]

# torchmetrics' keys -> the names logged (with a "val_" prefix) and printed.
METRIC_NAMES = {
    "map": "AP",
    "map_50": "AP50",
    "map_75": "AP75",
    "map_small": "APs",
    "map_medium": "APm",
    "map_large": "APl",
}

Batch = tuple[list[Tensor], list[dict[str, Tensor]]]


class DetectorModule(pl.LightningModule):
    """Trains ``model(images, targets)`` on its loss sum; validates with COCO box mAP.

    Args:
        model: a registered detector name (``fasterrcnn_aw_resnet50_fpn``).
        num_classes: classes including background (largest category id + 1).
        categories: category id -> name, kept in checkpoints for drawing predictions.
        trainable_layers: in a frozen backbone, the stages that train (0-5).
        pretrained_backbone: plain ResNet weights for the backbone, or ``None``.
        freeze: frozen BatchNorm and early stages; ``None``: when ``pretrained_backbone`` is given.
        min_size: the detector's shorter image side.
        max_size: the detector's longer side cap.
        model_kwargs: backbone options (``generator``, ``rank``, ``reduction``, ``gate``, ``pool``).
        detector_kwargs: further ``FasterRCNN`` options (``box_batch_size_per_image``, ...).
        lr: base learning rate (after warm-up).
        momentum: SGD momentum.
        weight_decay: decay of weights with 2+ dimensions; norms and biases get none.
        warmup_iters: iterations of linear warm-up.
        warmup_factor: the learning-rate factor at the first iteration.
        milestones: epochs after which the learning rate drops by ``gamma``.
        gamma: the decay factor.
    """

    def __init__(
        self,
        model: str,
        *,
        num_classes: int,
        categories: Mapping[int, str] | None = None,
        trainable_layers: int = 3,
        pretrained_backbone: str | None = None,
        freeze: bool | None = None,
        min_size: int = 800,
        max_size: int = 1333,
        model_kwargs: Mapping[str, Any] | None = None,
        detector_kwargs: Mapping[str, Any] | None = None,
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_iters: int = 1000,
        warmup_factor: float = 1e-3,
        milestones: Sequence[int] = (8, 11),
        gamma: float = 0.1,
    ) -> None:
        super().__init__()
        if lr <= 0 or not 0 < warmup_factor <= 1 or warmup_iters < 0:
            raise ValueError(
                f"need lr > 0, 0 < warmup_factor <= 1 and warmup_iters >= 0, got lr={lr}, "
                f"warmup_factor={warmup_factor}, warmup_iters={warmup_iters}"
            )
        self.save_hyperparameters()
        self.model = create_detector(
            model,
            num_classes=num_classes,
            trainable_layers=trainable_layers,
            pretrained_backbone=pretrained_backbone,
            freeze=freeze,
            min_size=min_size,
            max_size=max_size,
            detector_kwargs=detector_kwargs,
            **(model_kwargs or {}),
        )
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """images: list of (3, H, W) in [0, 1] -> per image boxes (K, 4), labels (K,), scores (K,)."""
        return self.model(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        batch_size = len(images)
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        for name, value in losses.items():
            self.log(
                f"train_{name}", value, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True
            )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, targets = batch
        predictions = self.model(images)
        self.val_map.update(
            [
                {key: value.float() if key != "labels" else value for key, value in p.items()}
                for p in predictions
            ],
            [
                {key: target[key].as_subclass(Tensor) for key in ("boxes", "labels", "iscrowd", "area")}
                for target in targets
            ],
        )

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_map.compute()
        self.val_map.reset()
        for key, name in METRIC_NAMES.items():
            self.log(f"val_{name}", metrics[key].float(), prog_bar=name in ("AP", "AP50"), sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.SGD(param_groups(self.model, hp.weight_decay), lr=hp.lr, momentum=hp.momentum)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        scheduler = warmup_multistep(
            optimizer,
            warmup_steps=min(hp.warmup_iters, total),
            warmup_factor=hp.warmup_factor,
            milestones=[epoch * per_epoch for epoch in hp.milestones],
            gamma=hp.gamma,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
