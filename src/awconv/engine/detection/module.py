"""Detection training on Lightning: Faster or Mask R-CNN by name, a named schedule, COCO evaluation.

``DetectorModule`` trains any registered detector (``fasterrcnn_{backbone}_fpn``,
``maskrcnn_{backbone}_fpn``) with SGD, a linear warm-up and a step schedule
(``awconv.engine.detection.recipe``: Detectron's and mmdetection's 1x by default) and evaluates it
with COCOeval's twelve figures and per-class AP, for boxes and masks
(``awconv.engine.detection.metrics``). ``DetectionDataModule`` feeds it COCO-format data; trainer,
checkpoints and logs come from ``awconv.engine.trainer``.

Labels are contiguous (1..K, 0 the background); ``categories`` (category id -> name, in label
order) maps them back to the json's category ids and is saved in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from awconv.detection import create_detector, has_masks
from awconv.engine.detection.metrics import METRIC_NAMES, CocoMeanAveragePrecision, summarize_coco
from awconv.engine.detection.recipe import detection_lr_schedule, detection_param_groups

__all__ = ["DetectorModule"]

Batch = tuple[list[Tensor], list[dict[str, Any]]]
# Mask probabilities above this are the instance (torchvision's references threshold at 0.5 too).
MASK_THRESHOLD = 0.5


class DetectorModule(pl.LightningModule):
    """Trains ``model(images, targets)`` on its loss sum; validates with COCOeval.

    Args:
        model: a registered detector name (``fasterrcnn_aw_resnet50_fpn``, ``maskrcnn_resnet50_fpn``).
        num_classes: classes including background (``len(categories) + 1``).
        categories: category id -> name in label order (label 1 first), kept in checkpoints to map
            predictions back to category ids and to name them; ``None``: labels are the ids.
        trainable_layers: in a frozen backbone, the stages that train (0-5).
        pretrained_backbone: plain ResNet weights for the backbone, or ``None``.
        freeze: frozen BatchNorm and early stages; ``None``: when ``pretrained_backbone`` is given.
        min_size: the detector's shorter image side; several for multi-scale training.
        max_size: the detector's longer side cap.
        model_kwargs: backbone options (``generator``, ``rank``, ``reduction``, ``gate``, ``pool``).
        detector_kwargs: further ``FasterRCNN``/``MaskRCNN`` options (``box_batch_size_per_image``...).
        lr: base learning rate (after warm-up).
        momentum: SGD momentum.
        weight_decay: decay of weights with 2+ dimensions; biases get none.
        norm_weight_decay: decay of normalisation layers' parameters.
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
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        model_kwargs: Mapping[str, Any] | None = None,
        detector_kwargs: Mapping[str, Any] | None = None,
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        norm_weight_decay: float = 0.0,
        warmup_iters: int = 1000,
        warmup_factor: float = 1e-3,
        milestones: Sequence[int] = (8, 11),
        gamma: float = 0.1,
    ) -> None:
        super().__init__()
        if (
            lr <= 0
            or not 0 < warmup_factor <= 1
            or warmup_iters < 0
            or weight_decay < 0
            or norm_weight_decay < 0
        ):
            raise ValueError(
                f"need lr > 0, 0 < warmup_factor <= 1, warmup_iters >= 0 and weight decays >= 0, got "
                f"lr={lr}, warmup_factor={warmup_factor}, warmup_iters={warmup_iters}, "
                f"weight_decay={weight_decay}, norm_weight_decay={norm_weight_decay}"
            )
        if categories is not None and len(categories) + 1 != num_classes:
            raise ValueError(
                f"num_classes must be len(categories) + 1 = {len(categories) + 1} (background first), "
                f"got {num_classes}"
            )
        self.save_hyperparameters()
        self.masks = has_masks(model)
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
        self.category_ids = list(categories) if categories is not None else list(range(1, num_classes))
        self.category_names = (
            list(categories.values()) if categories is not None else [str(i) for i in self.category_ids]
        )
        self.val_map = CocoMeanAveragePrecision(masks=self.masks)
        self.coco_metrics: dict[str, Any] = {}

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """images: list of (3, H, W) in [0, 1] -> per image boxes (K, 4), labels (K,), scores (K,), masks."""
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

    def _detections(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Per image ``boxes`` (K, 4) float32, ``labels`` (K,), ``scores`` (K,), ``masks`` (K, H, W) bool."""
        found = []
        for prediction in self.model(images):
            detection = {key: prediction[key].float() for key in ("boxes", "scores")}
            detection["labels"] = prediction["labels"]
            if self.masks:
                detection["masks"] = prediction["masks"][:, 0] > MASK_THRESHOLD
            found.append(detection)
        return found

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, targets = batch
        ground_truth = []
        for target in targets:
            truth: dict[str, Any] = {
                k: target[k].as_subclass(Tensor) for k in ("boxes", "labels", "iscrowd", "area")
            }
            if self.masks:
                truth["masks"] = target["masks"].as_subclass(Tensor).bool()
            ground_truth.append({**truth, "image_id": target["image_id"]})
        self.val_map.update(self._detections(images), ground_truth)

    def on_validation_epoch_end(self) -> None:
        # Every process computes the same figures from the gathered states; averaging equal values
        # (sync_dist) leaves them unchanged.
        self.coco_metrics = summarize_coco(self.val_map.compute(), self.category_names, masks=self.masks)
        self.val_map.reset()
        for prefix in ("", "mask_") if self.masks else ("",):
            for name in METRIC_NAMES.values():
                value = torch.tensor(self.coco_metrics[f"{prefix}{name}"])
                self.log(
                    f"val_{prefix}{name}", value, prog_bar=prefix + name in ("AP", "AP50"), sync_dist=True
                )

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Tensor]]:
        """Detections of a batch of ``(images, items)``, on the CPU (masks thresholded)."""
        images, _ = batch
        return [{key: value.cpu() for key, value in found.items()} for found in self._detections(images)]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = detection_param_groups(self.model, hp.weight_decay, hp.norm_weight_decay)
        optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = detection_lr_schedule(
            optimizer,
            steps_per_epoch=max(1, total // max(1, self.trainer.max_epochs)),
            total_steps=total,
            warmup_iters=hp.warmup_iters,
            warmup_factor=hp.warmup_factor,
            milestones=hp.milestones,
            gamma=hp.gamma,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
