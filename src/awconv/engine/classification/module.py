"""The image classifier as a ``LightningModule``: any registered model, cross-entropy, top-1/top-5.

The network is built by name with ``timm.create_model`` (importing ``awconv`` registers the
awconv ResNets), so every registered model trains the same way. An unknown model name or model
argument is a one-line error with the closest valid names. The optimiser and schedule come from
``awconv.engine.optim``, Mixup/CutMix from ``mixing``, the weight EMA is timm's ``ModelEmaV3``.
Top-5 is measured only with more than 5 classes (with 5 or fewer it is always 100%).
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
from timm.utils import ModelEmaV3
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from awconv.engine.classification.mixing import batch_mixer
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
        optimizer: ``"sgd"``, ``"adamw"``, ``"lamb"`` or ``"lars"`` (``build_optimizer``).
        lr: peak learning rate.
        weight_decay: decay of weights with 2+ dimensions; norms and biases get none.
        momentum: SGD and LARS momentum.
        betas: AdamW and LAMB betas; ``None``: the optimiser's.
        layer_decay: layer-wise learning-rate decay (timm's); ``None``: none.
        schedule: ``"cosine"`` or ``"step"``.
        warmup_epochs: epochs of linear warm-up (may be fractional).
        warmup_lr: the learning rate the warm-up starts from.
        min_lr: the learning rate the schedule decays to.
        step_epochs: for ``"step"``, epochs between decays by ``gamma``.
        gamma: for ``"step"``, the decay factor.
        label_smoothing: cross-entropy label smoothing.
        mixup: Mixup alpha (0: off).
        cutmix: CutMix alpha (0: off).
        mixup_switch_prob: with both, the probability of CutMix for a batch.
        ema: decay of an exponential moving average of the weights (``ModelEmaV3``, updated after
            every optimiser step and validated beside the raw weights as ``val_ema_*``); ``None``: none.
        ema_warmup: timm's EMA warm-up: the decay after optimiser step t is ``min(ema, 1 - t ** (-2/3))``.
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
        betas: list[float] | None = None,
        layer_decay: float | None = None,
        schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        warmup_lr: float = 0.0,
        min_lr: float = 0.0,
        step_epochs: int = 30,
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mixup_switch_prob: float = 0.5,
        ema: float | None = None,
        ema_warmup: bool = False,
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
        self.ema = ModelEmaV3(self.model, decay=ema, use_warmup=ema_warmup) if ema else None
        if self.ema is not None:
            # Only validation runs it, where Lightning puts every module in eval mode; left in eval mode
            # here, it would make Lightning warn at the start of training.
            self.ema.train()
        self._ema_step = 0
        if compile:
            self.model.compile()
        self.mixer = batch_mixer(mixup, cutmix, mixup_switch_prob, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_metrics = torch.nn.ModuleDict(
            {prefix: _accuracy(num_classes) for prefix in (["val", "val_ema"] if ema else ["val"])}
        )

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C, H, W) -> logits (N, num_classes)."""
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        targets = labels
        if self.mixer is not None:  # soft targets (N, num_classes); top-1 against the unmixed labels
            images, targets = self.mixer(images, labels)
        logits = self(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)
        self.train_top1(logits, labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_top1", self.train_top1, on_step=False, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        self._ema_step = self.trainer.global_step  # a resumed run's EMA continues from its step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.trainer.global_step  # optimiser steps: one per --grad-accum batches
        if self.ema is not None and step > self._ema_step:
            self.ema.update(self.model, step=step)
            self._ema_step = step

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        images = images.contiguous(memory_format=self.memory_format)
        networks = {"val": self.model, "val_ema": self.ema.module if self.ema is not None else None}
        for prefix, metrics in self.val_metrics.items():
            logits = networks[prefix](images)
            self.log(f"{prefix}_loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
            for name, metric in metrics.items():
                metric(logits, labels)
                self.log(f"{prefix}_{name}", metric, prog_bar=name == "top1")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = build_optimizer(
            self.model,
            hp.optimizer,
            lr=hp.lr,
            weight_decay=hp.weight_decay,
            momentum=hp.momentum,
            betas=hp.betas,
            layer_decay=hp.layer_decay,
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
            warmup_factor=hp.warmup_lr / hp.lr,
            min_factor=hp.min_lr / hp.lr,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _accuracy(num_classes: int) -> torch.nn.ModuleDict:
    """Top-1, and top-5 with more than 5 classes."""
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return torch.nn.ModuleDict(metrics)
