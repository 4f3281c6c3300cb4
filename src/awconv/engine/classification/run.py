"""Training and evaluation of image classifiers: the Python API behind ``awconv train`` / ``eval``.

``train_classifier(TrainConfig(...))`` trains one model on one data set into a run directory
(see ``awconv.engine.trainer`` for its layout) and adds ``best.safetensors`` (the best weights,
plain model keys), with ``--ema`` ``best-ema.safetensors`` (the EMA weights of the epoch whose
EMA validated best, from ``checkpoints/best-ema.ckpt``), ``metrics.json`` (the run's summary)
and ``curves.png``. A resumed run
continues exactly: see docs/training.md, "Resuming".

``evaluate_classifier`` evaluates weights; given a run's weights (or its directory) it builds the
model as the run did, from the run's ``config.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import timm
import torch

from awconv.data.classification import ClassificationData
from awconv.engine.checkpoint import export_safetensors, load_state_dict, load_weights
from awconv.engine.choices import PRECISIONS
from awconv.engine.classification.config import (
    OPTIONS,
    RESUME_MAY_CHANGE,
    TrainConfig,
    augmentation,
    saved_config,
)
from awconv.engine.classification.datamodule import ClassificationDataModule
from awconv.engine.classification.module import ClassifierModule
from awconv.engine.history import epoch_history, machines_of
from awconv.engine.plots import plot_training_curves
from awconv.engine.run_config import CONFIG_FILE, check_resumable, read_run_config
from awconv.engine.trainer import RunCheckpoint, build_trainer, resume_checkpoint, resume_epoch, write_json

__all__ = ["TrainConfig", "evaluate_classifier", "find_run_config", "train_classifier"]

_logger = logging.getLogger(__name__)

# The EMA weights' keys in a checkpoint of ``ClassifierModule`` (its ``ema``, timm's ``ModelEmaV3``).
EMA_PREFIX = "ema.module."


def train_classifier(
    config: TrainConfig, *, data: ClassificationData | None = None, callbacks: Sequence[pl.Callback] = ()
) -> dict[str, Any]:
    """Trains, checkpoints, exports and plots one run; returns its summary (``metrics.json``).

    Args:
        config: the run.
        data: already built data for ``config.data`` (``awconv compare`` builds it once).
        callbacks: more Lightning callbacks.

    Raises:
        ValueError: resuming with a saved option changed (other than ``RESUME_MAY_CHANGE``), or a
            split that cannot be read.
    """
    run_dir = Path(config.run_dir)
    ckpt_path = resume_checkpoint(run_dir, config.resume)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = ClassificationDataModule(
        data or config.data,
        batch_size=config.batch_size,
        num_workers=config.workers,
        image_size=config.image_size,
        augmentation=augmentation(config),
        seed=config.seed,
        start_epoch=resume_epoch(ckpt_path),
    )
    info = datamodule.data
    saved = saved_config(config, image_size=info.image_size)
    if ckpt_path is not None:
        compared = {k: v for k, v in saved.items() if k not in ("run_dir", "resume")}
        check_resumable(run_dir, compared, may_change=RESUME_MAY_CHANGE, options=OPTIONS)
    datamodule.check()
    # A resumed run takes its weights from the checkpoint, not from --pretrained.
    module = _module(config, info, pretrained=None if ckpt_path else config.pretrained)
    # Seed again once the model is built, so that training-time randomness (dropout, drop-path)
    # starts from the seed alone, whatever the model's initialisation drew. The batches do not
    # depend on the process-wide generator at all (awconv.engine.loaders).
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.ema is not None:
        callbacks = [*callbacks, _ema_checkpoint(run_dir)]
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
        keep_top=config.keep_top,
        accumulate_grad_batches=config.grad_accum,
    )
    if trainer.is_global_zero:
        resolved = {
            **saved,
            "num_classes": info.num_classes,
            "in_chans": info.in_chans,
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
        write_json(run_dir / CONFIG_FILE, resolved)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return {}
    best = Path(trainer.checkpoint_callback.best_model_path or run_dir / "checkpoints" / "best.ckpt")
    export_safetensors(load_state_dict(best), run_dir / "best.safetensors")
    recorder = epoch_history(trainer)
    history = recorder.rows
    best_row = max(history, key=lambda row: row.get("val_top1", float("-inf")))
    summary = {
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "data": saved["data"],
        "seed": config.seed,
        "epochs": len(history),
        "best_epoch": best_row["epoch"],
        "best_val_top1": best_row["val_top1"],
        "final_val_top1": history[-1]["val_top1"],
        "final_val_loss": history[-1]["val_loss"],
        "fit_seconds": recorder.fit_seconds,
        "params": sum(p.numel() for p in module.model.parameters()),
        "machines": machines_of(history),
    }
    if "val_top5" in best_row:
        summary["best_val_top5"] = best_row["val_top5"]
    if config.ema is not None:
        export_safetensors(
            load_state_dict(run_dir / "checkpoints" / "best-ema.ckpt", prefix=EMA_PREFIX),
            run_dir / "best-ema.safetensors",
        )
        best_ema = max(history, key=lambda row: row.get("val_ema_top1", float("-inf")))
        summary.update(
            best_ema_epoch=best_ema["epoch"],
            best_ema_val_top1=best_ema["val_ema_top1"],
            final_ema_val_top1=history[-1]["val_ema_top1"],
        )
    rates = [row["train_images_per_s"] for row in history if "train_images_per_s" in row]
    if rates:
        summary["train_images_per_s"] = sorted(rates)[len(rates) // 2]
    write_json(run_dir / "metrics.json", summary)
    title = (
        f"{config.model} on {config.data} ({info.image_size} px), {config.optimizer} lr={config.lr} "
        f"{config.schedule}, batch {config.batch_size}, seed {config.seed}"
    )
    plot_training_curves(history, run_dir / "curves.png", title=title)
    return summary


def _ema_checkpoint(run_dir: Path) -> RunCheckpoint:
    """``checkpoints/best-ema.ckpt``: the epoch whose EMA weights validated best."""
    return RunCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-ema",
        monitor="val_ema_top1",
        mode="max",
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def find_run_config(weights: str | Path | None, run_dir: str | Path | None) -> Path | None:
    """The ``config.json`` of the run that ``weights`` come from.

    ``run_dir`` given: its ``config.json`` (which must exist). Otherwise the one beside ``weights``
    (``RUN/best.safetensors``) or one folder up (``RUN/checkpoints/best.ckpt``), or ``None``. A
    ``config.json`` that is not a training run's (no ``model`` and ``num_classes``) does not count.
    """
    if run_dir is not None:
        path = Path(run_dir) / CONFIG_FILE
        if not _is_run_config(path):
            raise FileNotFoundError(f"--run '{run_dir}' holds no {CONFIG_FILE} of a training run")
        return path
    if weights is None:
        return None
    folder = Path(weights).parent
    return next((p / CONFIG_FILE for p in (folder, folder.parent) if _is_run_config(p / CONFIG_FILE)), None)


def _is_run_config(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and {"model", "num_classes", "image_size"} <= content.keys()


def evaluate_classifier(
    model: str | None,
    weights: str | None,
    data: str | None,
    *,
    run_dir: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    batch_size: int = 128,
    image_size: int | None = None,
    workers: int = 4,
    precision: str = "32",
    accelerator: str = "auto",
    channels_last: bool = False,
    progress_bar: bool = True,
    ema: bool = False,
) -> dict[str, float]:
    """Validation loss, top-1 (and top-5 with more than 5 classes) of weights on a validation set.

    When the weights come from a training run (``config.json`` beside them or one folder up, or
    ``run_dir`` given), the run's model, model arguments, image size, channels and classes are
    used, and its data and ``best.safetensors`` unless given. A given option that contradicts the
    run is used, with a warning naming both values.

    Args:
        model: a registered name; ``None``: the run's.
        weights: ``.safetensors`` or a checkpoint of ``train_classifier``, loaded strictly; ``None``:
            the run's ``best.safetensors``.
        data: the data spec whose validation split is evaluated; ``None``: the run's.
        run_dir: the run directory the weights come from.
        model_kwargs: model arguments; ``None``: the run's (or none).
        image_size: image side; ``None``: the run's (or the data set's default).
        ema: with ``weights`` ``None``, the run's ``best-ema.safetensors`` (trained with ``--ema``).

    Raises:
        ValueError: the data's classes or channels differ from the run's, or a value is missing.
    """
    config_path = find_run_config(weights, run_dir)
    run = read_run_config(config_path.parent) if config_path else {}
    if config_path:
        model = _from_run("MODEL", model, run.get("model"), config_path)
        model_kwargs = _from_run("--model-arg", model_kwargs, run.get("model_kwargs") or {}, config_path)
        image_size = _from_run("--image-size", image_size, run.get("image_size"), config_path)
        data = data or run.get("data")
        weights = weights or str(config_path.parent / ("best-ema.safetensors" if ema else "best.safetensors"))
        _logger.info(
            "evaluating as the run in '%s' was trained (its config.json): %s, model arguments %s, "
            "%s px, %s channel(s), %s classes",
            config_path.parent,
            model,
            model_kwargs,
            image_size,
            run.get("in_chans"),
            run.get("num_classes"),
        )
    for name, value in (("MODEL", model), ("--weights", weights), ("--data", data)):
        if value is None:
            raise ValueError(f"eval needs {name} (or --run with a training run's directory)")
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' does not exist")
    datamodule = ClassificationDataModule(
        data, batch_size=batch_size, num_workers=workers, image_size=image_size
    )
    info = datamodule.data
    for name, key, value in (
        ("classes", "num_classes", info.num_classes),
        ("channels", "in_chans", info.in_chans),
    ):
        if key in run and run[key] != value:
            raise ValueError(
                f"the run in '{config_path.parent}' was trained with {run[key]} {name}, --data {data} has "
                f"{value}; evaluate on data with the run's {name}"
            )
    config = TrainConfig(model, data, "", model_kwargs=dict(model_kwargs or {}), channels_last=channels_last)
    module = _module(config, info, pretrained=None)
    load_weights(module.model, weights)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=PRECISIONS[precision],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
    )
    (results,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    return {name: float(value) for name, value in results.items()}


def _from_run(option: str, given: Any, saved: Any, config_path: Path) -> Any:
    """The given value when there is one (with a warning when it contradicts the run), else the run's."""
    if given is None:
        return saved
    if saved is not None and given != saved:
        _logger.warning(
            "%s %s contradicts the run in '%s', trained with %s; evaluating with %s",
            option,
            given,
            config_path.parent,
            saved,
            given,
        )
    return given


def _module(config: TrainConfig, info: ClassificationData, *, pretrained: str | None) -> ClassifierModule:
    return ClassifierModule(
        config.model,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        model_kwargs=config.model_kwargs,
        pretrained=pretrained,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        betas=config.betas,
        layer_decay=config.layer_decay,
        schedule=config.schedule,
        warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        step_epochs=config.step_epochs,
        gamma=config.gamma,
        label_smoothing=config.label_smoothing,
        mixup=config.mixup,
        cutmix=config.cutmix,
        mixup_switch_prob=config.mixup_switch_prob,
        ema=config.ema,
        ema_warmup=config.ema_warmup,
        channels_last=config.channels_last,
        compile=config.compile,
    )
