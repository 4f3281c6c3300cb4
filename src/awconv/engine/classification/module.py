"""The image classifier as a ``LightningModule``: any registered model, cross-entropy, top-1/top-5.

The network is built by name with ``timm.create_model`` (importing ``awconv`` registers the
awconv ResNets), so every registered model trains the same way. The optimiser and schedule come
from ``awconv.engine.optim``; the checkpoint carries the random-number state, so a resumed run
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from awconv.engine.optim import build_optimizer, build_scheduler
from awconv.models.pretrained import load_pretrained

__all__ = ["ClassifierModule", "create_classifier"]

_logger = logging.getLogger(__name__)


def create_classifier(
    model: str, *, num_classes: int, in_chans: int, model_kwargs: dict[str, Any] | None = None
) -> torch.nn.Module:
    """Builds a registered model by name; an unknown name raises ``ValueError`` naming close matches."""
    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('_')[0]}*")[:8]
        raise ValueError(f"unknown model '{model}': not in the timm registry (close names: {close})")
    return timm.create_model(model, num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {}))


class ClassifierModule(pl.LightningModule):
    """Trains and evaluates ``model`` on ``(images (N, C, H, W), labels (N,))`` batches.

    Args:
        model: a registered model name.
        num_classes: classifier outputs.
        in_chans: image channels C.
        model_kwargs: extra keyword arguments for the model (``generator="lowrank"``...).
        pretrained: weights to start from, loaded by ``awconv.load_pretrained`` (a plain ResNet
            checkpoint also fills an SE/CBAM/AW model), or ``None``.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate.
        weight_decay: decay of weights with 2+ dimensions; norms and biases get none.
        momentum: SGD momentum.
        schedule: ``"cosine"`` or ``"step"``.
        warmup_epochs: epochs of linear warm-up (may be fractional).
        step_epochs: for ``"step"``, epochs between decays by ``gamma``.
        gamma: for ``"step"``, the decay factor.
        label_smoothing: cross-entropy label smoothing.
        channels_last: run the network in the channels-last memory format.
        compile: compile the network with ``torch.compile``.
    """

    def __init__(
        self,
        model: str,
        *,
        num_classes: int,
        in_chans: int = 3,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        step_epochs: int = 30,
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_classifier(
            model, num_classes=num_classes, in_chans=in_chans, model_kwargs=model_kwargs
        )
        if pretrained:
            _logger.info("%s: %s", pretrained, load_pretrained(self.model, pretrained).summary())
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        if compile:
            self.model.compile()
        top_k = min(5, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C, H, W) -> logits (N, num_classes)."""
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.train_top1(logits, labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_top1", self.train_top1, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.val_top1(logits, labels)
        self.val_top5(logits, labels)
        self.log("val_loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        self.log("val_top1", self.val_top1, prog_bar=True)
        self.log("val_top5", self.val_top5)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = build_optimizer(
            self.model, hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay, momentum=hp.momentum
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        scheduler = build_scheduler(
            optimizer,
            hp.schedule,
            total_steps=total,
            warmup_steps=min(total, round(hp.warmup_epochs * per_epoch)),
            step_every=hp.step_epochs * per_epoch,
            gamma=hp.gamma,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("rng_state", {})
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
