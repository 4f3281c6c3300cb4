"""Detection runs: train with checkpoints and resume, evaluate and predict with saved weights.

A run directory is the one of ``awconv.engine.trainer`` (config.json, checkpoints/last.ckpt and
best.ckpt, history.json, logs/) plus ``metrics.json`` (the best epoch's COCOeval figures for boxes
and masks, AP per category, and the machines its epochs ran on) and ``model.safetensors`` (the
best weights). ``config.json`` holds the data and backbone weights as absolute paths, so the run
resumes from any working directory and after a move; a resumed run with another value of an option
that may not change is an error (``awconv.engine.run_config``).

Data is checked before anything else: a bad annotation file stops the run before a model is
built or the run directory is made. Under DDP every validation image is counted once
(``awconv.engine.detection.metrics``), so ``--devices N`` gives the single-process figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from awconv.detection import has_masks
from awconv.engine.checkpoint import export_safetensors
from awconv.engine.detection.datamodule import DetectionDataModule
from awconv.engine.detection.module import DetectorModule
from awconv.engine.detection.predict import ImageFile, predict_images
from awconv.engine.detection.recipe import Schedule, resolve_schedule
from awconv.engine.history import epoch_history, machines_of
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

__all__ = ["DetectionConfig", "evaluate_detector", "load_detector", "predict_detector", "train_detector"]


@dataclasses.dataclass
class DetectionConfig:
    """One detection run; the defaults are the 1x schedule at 2 images per process.

    ``schedule``: ``1x``, ``2x``, ``3x`` or ``torchvision`` (``awconv.engine.detection.recipe``);
    ``epochs`` and ``milestones`` replace its values where given. ``min_size``: several values
    train at multiple scales. ``aspect_ratio_group_factor``: -1 turns grouping off.
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
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    schedule: str = "1x"
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    batch_size: int = 2
    val_batch_size: int = 1
    aspect_ratio_group_factor: int = 3
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    norm_weight_decay: float = 0.0
    warmup_iters: int = 1000
    gamma: float = 0.1
    workers: int = 2
    precision: str = "32"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
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


def _saved_config(config: DetectionConfig, schedule: Schedule, lr: float) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it: absolute data and weights paths, resolved schedule and lr."""
    return {
        **dataclasses.asdict(config),
        "train": [portable_path(path, config.run_dir) for path in config.train],
        "val": [portable_path(path, config.run_dir) for path in config.val],
        "pretrained_backbone": portable_path(config.pretrained_backbone, config.run_dir),
        "epochs": schedule.epochs,
        "milestones": list(schedule.milestones),
        "run_dir": ".",
        "lr": lr,
    }


def train_detector(config: DetectionConfig, *, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Trains one detector and evaluates its best checkpoint; returns the summary (``metrics.json``).

    The learning rate defaults to the linear scaling rule of the references,
    ``0.02 * batch_size * devices * num_nodes / 16``.
    """
    run_dir = Path(config.run_dir)
    ckpt_path = resume_checkpoint(run_dir, config.resume)
    schedule = resolve_schedule(config.schedule, config.epochs, config.milestones)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = DetectionDataModule(
        config.val,
        config.train,
        batch_size=config.batch_size,
        val_batch_size=config.val_batch_size,
        workers=config.workers,
        masks=has_masks(config.model),
        aspect_ratio_group_factor=config.aspect_ratio_group_factor,
        seed=config.seed,
        start_epoch=resume_epoch(ckpt_path),
    )
    lr = config.lr or 0.02 * config.batch_size * config.devices * config.num_nodes / 16
    saved = _saved_config(config, schedule, lr)
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
        norm_weight_decay=config.norm_weight_decay,
        warmup_iters=config.warmup_iters,
        milestones=schedule.milestones,
        gamma=config.gamma,
    )
    # Seed again once the model is built: the data order and augmentation then depend on the seed
    # alone, so runs of two detectors with one seed see the same batches (pairing by seed).
    pl.seed_everything(config.seed, workers=True, verbose=False)
    trainer = build_trainer(
        run_dir,
        model=module.model,
        max_epochs=schedule.epochs,
        monitor="val_AP",
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        precision=config.precision,
        sync_batchnorm=config.sync_batchnorm,
        progress_bar=config.progress_bar,
        callbacks=callbacks,
        # torchvision's RoI Align has no deterministic CUDA backward: warn there instead of failing.
        deterministic="warn" if config.deterministic else False,
        # The data module shards both loaders itself (aspect-ratio groups, each image counted once).
        use_distributed_sampler=False,
    )
    if trainer.is_global_zero:
        write_json(
            run_dir / "config.json",
            {**saved, "num_classes": data.num_classes, "categories": data.categories},
        )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path or str(last_checkpoint(run_dir))
    trainer.validate(module, datamodule=data, ckpt_path=best, verbose=False)
    summary = {
        "model": config.model,
        "checkpoint": best,
        **module.coco_metrics,
        "machines": machines_of(epoch_history(trainer).rows),
    }
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
    batch_size: int = 1,
    workers: int = 2,
    accelerator: str = "auto",
    devices: int = 1,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """COCOeval's figures (and AP per category) of a checkpoint on a COCO-format data set.

    Args:
        weights: a checkpoint of ``train_detector``.
        val: ``(images_dir, annotations_json)``; its category ids must be among the checkpoint's.
        batch_size: images per process and step (1: the figures do not depend on it).
        workers: data-loading worker processes.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``...
        devices: processes (DDP when > 1); every image is counted once.
        out: write the figures to this json (from the first process).

    Returns:
        ``{"AP": ..., ..., "AP_per_class": {...}}``, with ``mask_`` figures for mask detectors.
    """
    module = load_detector(weights)
    data = DetectionDataModule(
        val,
        val_batch_size=batch_size,
        workers=workers,
        categories=module.hparams.categories,
        masks=module.masks,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=data, verbose=False)
    if out is not None and trainer.is_global_zero:
        write_json(out, module.coco_metrics)
    return module.coco_metrics


def predict_detector(
    weights: str | Path,
    files: Sequence[ImageFile],
    out_dir: str | Path,
    *,
    draw: bool = False,
    score_thresh: float = 0.5,
    accelerator: str = "auto",
    workers: int = 0,
) -> tuple[Path, list[Path]]:
    """Writes ``out_dir/predictions.json`` (COCO results) and, with ``draw``, drawn images beside it.

    Returns:
        The json and the drawn files.
    """
    out_dir = Path(out_dir)
    out_file = out_dir / "predictions.json"
    drawn = predict_images(
        load_detector(weights),
        files,
        out_file,
        draw_dir=out_dir if draw else None,
        score_thresh=score_thresh,
        accelerator=accelerator,
        workers=workers,
    )
    return out_file, drawn
