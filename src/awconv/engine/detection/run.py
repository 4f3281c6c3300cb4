"""Detection runs: train with checkpoints and resume, evaluate saved weights, load a detector.

A run directory is the one of ``awconv.engine.trainer`` (config.json, checkpoints/last.ckpt and
best.ckpt, history.json, logs/) plus ``metrics.json`` (the best epoch's COCO box mAP) and
``model.safetensors`` (the best weights). ``config.json`` holds the data and backbone weights as
absolute paths, so the run resumes from any working directory and after a move; a resumed run
with another value of an option that may not change is an error (``awconv.engine.run_config``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from awconv.engine.checkpoint import export_safetensors
from awconv.engine.detection.datamodule import DetectionDataModule
from awconv.engine.detection.module import METRIC_NAMES, DetectorModule
from awconv.engine.loaders import check_splits
from awconv.engine.run_config import check_resumable, portable_path
from awconv.engine.trainer import (
    build_trainer,
    last_checkpoint,
    resume_checkpoint,
    resume_epoch,
    write_json,
)
from awconv.models.pretrained import load_weights_file

__all__ = ["DetectionConfig", "evaluate_detector", "load_detector", "train_detector"]


@dataclasses.dataclass
class DetectionConfig:
    """One detection run; the defaults are the COCO 1x recipe at 2 images per process.

    ``deterministic``: deterministic algorithms where torch has them (a warning for the others, such
    as RoI Align's CUDA backward).
    """

    model: str
    train: tuple[str, str]
    val: tuple[str, str]
    run_dir: str
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    detector_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained_backbone: str | None = None
    freeze: bool | None = None
    trainable_layers: int = 3
    min_size: int = 800
    max_size: int = 1333
    epochs: int = 12
    batch_size: int = 2
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 1000
    milestones: tuple[int, ...] = (8, 11)
    gamma: float = 0.1
    workers: int = 2
    precision: str = "32"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    seed: int = 0
    deterministic: bool = False
    resume: str | None = None
    progress_bar: bool = True


# Options a resumed run may change, and the options named for other fields in its errors.
RESUME_MAY_CHANGE = ("epochs", "workers", "devices", "num_nodes", "accelerator", "progress_bar")
_OPTIONS = {
    "train": "--data",
    "val": "--val-data",
    "model": "--model",
    "model_kwargs": "--model-arg",
    "detector_kwargs": "--detector-arg",
    "progress_bar": "--no-progress",
}


def _saved_config(config: DetectionConfig, lr: float) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it: absolute data and weights paths, the resolved lr."""
    return {
        **dataclasses.asdict(config),
        "train": [portable_path(path, config.run_dir) for path in config.train],
        "val": [portable_path(path, config.run_dir) for path in config.val],
        "pretrained_backbone": portable_path(config.pretrained_backbone, config.run_dir),
        "milestones": list(config.milestones),
        "run_dir": ".",
        "lr": lr,
    }


def _metrics(results: dict[str, Any]) -> dict[str, float]:
    return {name: float(results[f"val_{name}"]) for name in METRIC_NAMES.values()}


def train_detector(config: DetectionConfig, *, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Trains one detector and evaluates its best checkpoint; returns the summary (``metrics.json``).

    The learning rate defaults to the linear scaling rule of the 1x recipe,
    ``0.02 * batch_size * devices * num_nodes / 16``.
    """
    run_dir = Path(config.run_dir)
    ckpt_path = resume_checkpoint(run_dir, config.resume)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = DetectionDataModule(
        config.val,
        config.train,
        batch_size=config.batch_size,
        workers=config.workers,
        min_size=config.min_size,
        max_size=config.max_size,
        seed=config.seed,
        start_epoch=resume_epoch(ckpt_path),
    )
    lr = config.lr or 0.02 * config.batch_size * config.devices * config.num_nodes / 16
    saved = _saved_config(config, lr)
    if ckpt_path is not None:
        compared = {k: v for k, v in saved.items() if k not in ("run_dir", "resume")}
        check_resumable(run_dir, compared, may_change=RESUME_MAY_CHANGE, options=_OPTIONS)
    check_splits({"training": data.train_set, "validation": data.val_set}, "the detection data")
    module = DetectorModule(
        config.model,
        num_classes=data.num_classes,
        categories=data.categories,
        trainable_layers=config.trainable_layers,
        pretrained_backbone=config.pretrained_backbone,
        freeze=config.freeze,
        min_size=config.min_size,
        max_size=config.max_size,
        model_kwargs=config.model_kwargs,
        detector_kwargs=config.detector_kwargs,
        lr=lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        warmup_iters=config.warmup_iters,
        milestones=config.milestones,
        gamma=config.gamma,
    )
    # Seed again once the model is built: the data order and augmentation then depend on the seed
    # alone, so runs of two detectors with one seed see the same batches (pairing by seed).
    pl.seed_everything(config.seed, workers=True, verbose=False)
    trainer = build_trainer(
        run_dir,
        model=module.model,
        max_epochs=config.epochs,
        monitor="val_AP",
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        precision=config.precision,
        progress_bar=config.progress_bar,
        callbacks=callbacks,
        # torchvision's RoI Align has no deterministic CUDA backward: warn there instead of failing.
        deterministic="warn" if config.deterministic else False,
    )
    if trainer.is_global_zero:
        write_json(run_dir / "config.json", {**saved, "num_classes": data.num_classes})
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path or str(last_checkpoint(run_dir))
    results = trainer.validate(module, datamodule=data, ckpt_path=best, verbose=False)[0]
    summary = {"model": config.model, "checkpoint": best, **_metrics(results)}
    if trainer.is_global_zero:
        export_safetensors(module.model.state_dict(), run_dir / "model.safetensors")
        write_json(run_dir / "metrics.json", summary)
    return summary


def load_detector(weights: str | Path) -> DetectorModule:
    """Rebuilds a ``DetectorModule`` from a Lightning checkpoint of ``train_detector`` (``weights_only``)."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    checkpoint = load_weights_file(path)
    if (
        not isinstance(checkpoint, dict)
        or "hyper_parameters" not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise ValueError(f"weights file '{path}' is not a checkpoint of 'awconv detect train' (*.ckpt)")
    hparams = dict(checkpoint["hyper_parameters"])
    if hparams.get("freeze") is None:
        hparams["freeze"] = hparams.get("pretrained_backbone") is not None
    hparams["pretrained_backbone"] = None  # the checkpoint holds the weights
    module = DetectorModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def evaluate_detector(
    weights: str | Path,
    val: tuple[str, str],
    *,
    batch_size: int = 2,
    workers: int = 2,
    accelerator: str = "auto",
) -> dict[str, float]:
    """COCO box mAP (AP, AP50, AP75, APs, APm, APl) of a checkpoint on a COCO-format data set."""
    module = load_detector(weights)
    data = DetectionDataModule(val, batch_size=batch_size, workers=workers)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False)
    return _metrics(trainer.validate(module, datamodule=data, verbose=False)[0])
