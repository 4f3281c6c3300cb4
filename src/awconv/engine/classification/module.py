"""The image classifier as a ``LightningModule``: any registered model, cross-entropy, top-1/top-5.

The network is built by name with ``timm.create_model`` (importing ``awconv`` registers the
awconv ResNets), so every registered model trains the same way. An unknown model name or model
argument is a one-line error with the closest valid names. The optimiser and schedule come from
``awconv.engine.optim``. Top-5 is measured only with more than 5 classes (with 5 or fewer it is
always 100%).
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from awconv.engine.optim import build_optimizer, build_scheduler
from awconv.models import AW_KWARGS
from awconv.models.pretrained import load_pretrained

__all__ = ["ClassifierModule", "create_classifier"]


def create_classifier(
    model: str, *, num_classes: int, in_chans: int, model_kwargs: dict[str, Any] | None = None
) -> torch.nn.Module:
    """Builds a registered model by name.

    Raises:
        ValueError: an unknown model name, or a model argument the model does not take; the message
            names the closest registered names or arguments, the closest first.
    """
    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=5, cutoff=0.5)
        raise ValueError(
            f"unknown model '{model}': not in the timm registry"
            + (f"; closest names: {', '.join(close)}" if close else " (see timm.list_models())")
        )
    kwargs = dict(model_kwargs or {})
    try:
        return timm.create_model(model, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as error:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unexpected is None or unexpected.group(1) not in kwargs:
            raise
        name = unexpected.group(1)
        accepted = _model_arguments(timm.create_model(model, num_classes=num_classes, in_chans=in_chans))
        close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else f"it takes {', '.join(sorted(accepted))}"
        raise ValueError(
            f"--model-arg {name}={kwargs[name]!r}: {model} takes no argument '{name}' ({hint})"
        ) from None


def _model_arguments(network: torch.nn.Module) -> list[str]:
    """The keyword arguments of ``network``'s class and its bases (and the AW options of an AW model)."""
    names: set[str] = set()
    for cls in type(network).__mro__:
        if cls is torch.nn.Module or "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    if "aw_kwargs" in names:
        names.update(AW_KWARGS)
    return sorted(names - {"self", "aw_kwargs"})


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
            load_pretrained(self.model, pretrained)  # logs what it loaded, reset and adapted
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        if compile:
            self.model.compile()
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if num_classes > 5 else None

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
        self.log("val_loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        self.log("val_top1", self.val_top1, prog_bar=True)
        if self.val_top5 is not None:
            self.val_top5(logits, labels)
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
            warmup_steps=round(hp.warmup_epochs * per_epoch),
            step_every=hp.step_epochs * per_epoch,
            gamma=hp.gamma,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
