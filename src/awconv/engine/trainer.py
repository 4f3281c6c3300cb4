"""A Lightning ``Trainer`` and its run directory, shared by every training engine.

``build_trainer(run_dir, ...)`` wires devices, precision, DDP, gradient clipping, atomic
checkpoints (last and best), CSV and TensorBoard logs, a progress bar and the per-epoch history
into one ``Trainer``. Any ``LightningModule`` that logs the metric named by ``monitor`` can use it.

A run directory holds::

    config.json              the resolved configuration (``write_json``)
    checkpoints/last.ckpt    the last epoch, for ``fit(ckpt_path=...)`` to resume
    checkpoints/best.ckpt    the best epoch by ``monitor``
    history.json             one row of epoch metrics per epoch (``EpochHistory``)
    logs/csv/version_N/      Lightning CSV logs, one version per launch
    logs/tensorboard/version_N/

DDP: ``devices > 1`` or ``num_nodes > 1`` selects the ``ddp`` strategy (gloo on CPU, NCCL on GPUs).
Lightning starts the processes itself, or joins those started by ``torchrun`` or SLURM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from awconv.engine.checkpoint import AtomicCheckpointIO, atomic_write
from awconv.engine.history import EpochHistory

__all__ = ["PRECISIONS", "build_trainer", "last_checkpoint", "write_json"]

PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


def build_trainer(
    run_dir: str | Path,
    *,
    max_epochs: int,
    monitor: str,
    mode: str = "max",
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    precision: str = "32",
    sync_batchnorm: bool = False,
    gradient_clip_val: float | None = None,
    progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A ``Trainer`` writing checkpoints, logs and history under ``run_dir``.

    Args:
        run_dir: the run directory (created).
        max_epochs: epochs to train.
        monitor: the logged metric that picks ``best.ckpt``.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``...
        devices: processes per node.
        num_nodes: nodes.
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (mixed-precision autocast).
        sync_batchnorm: convert BatchNorm to SyncBatchNorm under DDP (GPUs only).
        gradient_clip_val: clip the gradient norm to this value; ``None`` does not clip.
        progress_bar: show a progress bar.
        callbacks: more callbacks.
        **trainer_kwargs: passed to ``pl.Trainer`` (``limit_train_batches``...).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    for name, value in (("max_epochs", max_epochs), ("devices", devices), ("num_nodes", num_nodes)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    run_dir = Path(run_dir)
    distributed = devices > 1 or num_nodes > 1
    checkpoints = run_dir / "checkpoints"
    all_callbacks: list[Callback] = [
        EpochHistory(run_dir / "history.json"),
        ModelCheckpoint(
            dirpath=checkpoints,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
        # Not save_last: Lightning 2.6 writes "last" only in epochs that also wrote a top-k file.
        ModelCheckpoint(
            dirpath=checkpoints, filename="last", save_on_train_epoch_end=True, enable_version_counter=False
        ),
        LearningRateMonitor(logging_interval="epoch"),
        *callbacks,
    ]
    if progress_bar:
        all_callbacks.append(TQDMProgressBar())
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=DDPStrategy(checkpoint_io=AtomicCheckpointIO()) if distributed else "auto",
        plugins=None if distributed else [AtomicCheckpointIO()],
        precision=PRECISIONS[precision],
        sync_batchnorm=sync_batchnorm and distributed,
        gradient_clip_val=gradient_clip_val,
        callbacks=all_callbacks,
        logger=[
            CSVLogger(run_dir / "logs", name="csv"),
            TensorBoardLogger(run_dir / "logs", name="tensorboard", default_hp_metric=False),
        ],
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    if sync_batchnorm and distributed and trainer.strategy.root_device.type == "cpu":
        raise ValueError("sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on CPU")
    return trainer


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """``run_dir/checkpoints/last.ckpt`` if it exists."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def write_json(path: str | Path, content: Any) -> None:
    """Writes ``content`` as indented JSON, atomically."""
    text = json.dumps(content, indent=2, sort_keys=True, default=str).encode()
    atomic_write(path, lambda file: file.write(text))
