"""Training and evaluation of image classifiers: the Python API behind ``awconv train`` / ``eval``.

``train_classifier(TrainConfig(...))`` trains one model on one data set into a run directory
(see ``awconv.engine.trainer`` for its layout) and adds ``best.safetensors`` (the best weights,
plain model keys), ``metrics.json`` (the run's summary) and ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import timm
import torch

from awconv.data.classification import ClassificationData
from awconv.engine.checkpoint import export_safetensors, load_state_dict, load_weights
from awconv.engine.classification.datamodule import ClassificationDataModule
from awconv.engine.classification.module import ClassifierModule
from awconv.engine.history import read_history
from awconv.engine.plots import plot_training_curves
from awconv.engine.trainer import PRECISIONS, build_trainer, resume_checkpoint, write_json

__all__ = ["TrainConfig", "evaluate_classifier", "train_classifier"]

_logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a classification run; saved as ``config.json`` in the run directory.

    ``deterministic``: ``torch.use_deterministic_algorithms(True)`` through Lightning, so runs with
    the same seed on the same hardware give equal weights. ``resume``: ``None`` starts afresh,
    ``"last"`` continues from ``run_dir``'s last checkpoint,
    any other value is a checkpoint path.
    """

    model: str
    data: str
    run_dir: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    epochs: int = 90
    batch_size: int = 128
    image_size: int | None = None
    workers: int = 4
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
    seed: int = 0
    deterministic: bool = False
    resume: str | None = None
    progress_bar: bool = True


def train_classifier(
    config: TrainConfig, *, data: ClassificationData | None = None, callbacks: Sequence[pl.Callback] = ()
) -> dict[str, Any]:
    """Trains, checkpoints, exports and plots one run; returns its summary (``metrics.json``).

    Args:
        config: the run.
        data: already built data for ``config.data`` (``awconv compare`` builds it once).
        callbacks: more Lightning callbacks.
    """
    run_dir = Path(config.run_dir)
    ckpt_path = resume_checkpoint(run_dir, config.resume)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = ClassificationDataModule(
        data or config.data,
        batch_size=config.batch_size,
        num_workers=config.workers,
        image_size=config.image_size,
    )
    info = datamodule.data
    module = _module(config, info)
    # Seed again once the model is built, so that the data order and augmentation depend on the
    # seed alone, not on how many random numbers the model's initialisation drew: runs of two
    # models with one seed then see the same batches, which is what pairing them by seed relies on.
    pl.seed_everything(config.seed, workers=True, verbose=False)
    trainer = build_trainer(
        run_dir,
        model=module.model,
        max_epochs=config.epochs,
        monitor="val_top1",
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        precision=config.precision,
        sync_batchnorm=config.sync_batchnorm,
        gradient_clip_val=config.clip_grad,
        progress_bar=config.progress_bar,
        callbacks=callbacks,
        deterministic=config.deterministic,
    )
    if trainer.is_global_zero:
        resolved = {
            **dataclasses.asdict(config),
            "num_classes": info.num_classes,
            "in_chans": info.in_chans,
            "image_size": info.image_size,
            "train_size": len(info.train),
            "val_size": len(info.val),
            "world_size": trainer.world_size,
            "versions": {
                "awconv": importlib.metadata.version("awconv"),
                "torch": torch.__version__,
                "lightning": lightning.__version__,
                "timm": timm.__version__,
            },
        }
        write_json(run_dir / "config.json", resolved)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    elapsed = time.perf_counter() - start
    if not trainer.is_global_zero:
        return {}
    best = Path(trainer.checkpoint_callback.best_model_path or run_dir / "checkpoints" / "best.ckpt")
    export_safetensors(load_state_dict(best), run_dir / "best.safetensors")
    history = read_history(run_dir / "history.json")
    best_row = max(history, key=lambda row: row.get("val_top1", float("-inf")))
    summary = {
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "data": config.data,
        "seed": config.seed,
        "epochs": len(history),
        "best_epoch": best_row["epoch"],
        "best_val_top1": best_row["val_top1"],
        "best_val_top5": best_row.get("val_top5"),
        "final_val_top1": history[-1]["val_top1"],
        "final_val_loss": history[-1]["val_loss"],
        "fit_seconds": elapsed,
        "params": sum(p.numel() for p in module.model.parameters()),
    }
    write_json(run_dir / "metrics.json", summary)
    title = (
        f"{config.model} on {config.data} ({info.image_size} px), {config.optimizer} lr={config.lr} "
        f"{config.schedule}, batch {config.batch_size}, seed {config.seed}"
    )
    plot_training_curves(history, run_dir / "curves.png", title=title)
    _logger.info(
        "best val top-1 %.2f%% (epoch %d); run directory %s",
        100 * summary["best_val_top1"],
        best_row["epoch"],
        run_dir,
    )
    return summary


def evaluate_classifier(
    model: str,
    weights: str,
    data: str,
    *,
    model_kwargs: dict[str, Any] | None = None,
    batch_size: int = 128,
    image_size: int | None = None,
    workers: int = 4,
    precision: str = "32",
    accelerator: str = "auto",
    channels_last: bool = False,
) -> dict[str, float]:
    """Validation loss, top-1 and top-5 of ``model`` with ``weights`` on ``data``'s validation set.

    ``weights``: ``.safetensors`` or a checkpoint of ``train_classifier`` (``best.ckpt``), loaded strictly.
    """
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' does not exist")
    datamodule = ClassificationDataModule(
        data, batch_size=batch_size, num_workers=workers, image_size=image_size
    )
    module = _module(
        TrainConfig(
            model,
            data,
            "",
            model_kwargs=dict(model_kwargs or {}),
            channels_last=channels_last,
        ),
        datamodule.data,
    )
    load_weights(module.model, weights)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=PRECISIONS[precision],
        logger=False,
        enable_checkpointing=False,
    )
    (results,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    return {name: float(value) for name, value in results.items()}


def _module(config: TrainConfig, info: ClassificationData) -> ClassifierModule:
    return ClassifierModule(
        config.model,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        model_kwargs=config.model_kwargs,
        pretrained=config.pretrained,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        schedule=config.schedule,
        warmup_epochs=config.warmup_epochs,
        step_epochs=config.step_epochs,
        gamma=config.gamma,
        label_smoothing=config.label_smoothing,
        channels_last=config.channels_last,
        compile=config.compile,
    )
