"""A Lightning ``Trainer`` and its run directory, shared by every training engine.

``build_trainer(run_dir, ...)`` checks that the run directory can hold the run, then wires
devices, precision, DDP, gradient clipping, atomic checkpoints (last and best) that carry the
random-generator states and follow the run directory when it moves, CSV and TensorBoard logs, a
progress bar and the per-epoch history into one ``Trainer``. Any ``LightningModule`` that logs the
metric named by ``monitor`` can use it; ``resume_checkpoint`` says where its run continues and
``resume_epoch`` at which epoch.

A run directory holds::

    config.json              the resolved configuration (``awconv.engine.run_config``)
    checkpoints/last.ckpt    the last epoch, for ``fit(ckpt_path=...)`` to resume
    checkpoints/best.ckpt    the best epoch by ``monitor``
    checkpoints/top/         with ``keep_top`` K: the K best epochs, ``epoch=E-<monitor>=V.ckpt``
    history.json             one row of epoch metrics per epoch (``EpochHistory``)
    logs/csv/version_N/      Lightning CSV logs, one version per launch
    logs/tensorboard/version_N/

DDP: ``devices > 1`` or ``num_nodes > 1`` selects the ``ddp`` strategy (gloo on CPU, NCCL on GPUs).
Lightning starts the processes itself, or joins those started by ``torchrun`` or SLURM.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from awconv.engine.checkpoint import AtomicCheckpointIO, atomic_write
from awconv.engine.choices import PRECISIONS
from awconv.engine.finite_loss import StopOnNonFiniteLoss
from awconv.engine.history import EpochHistory
from awconv.engine.random_state import RandomState

__all__ = [
    "PRECISIONS",
    "RunCheckpoint",
    "TopCheckpoints",
    "build_trainer",
    "check_run_dir",
    "checkpoint_bytes",
    "last_checkpoint",
    "resume_checkpoint",
    "resume_epoch",
    "write_json",
]

# Room for logs, history and plots beside the checkpoints.
_SPARE_BYTES = 16 * 2**20


def build_trainer(
    run_dir: str | Path,
    *,
    model: torch.nn.Module,
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
    deterministic: bool | str = False,
    keep_top: int = 0,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A ``Trainer`` writing checkpoints, logs and history under ``run_dir``.

    Args:
        run_dir: the run directory (created, and checked for room for ``model``'s checkpoints).
        model: the network trained, whose checkpoints the run directory must hold.
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
        deterministic: ``True``: ``torch.use_deterministic_algorithms(True)`` (an operation without
            a deterministic implementation raises); ``"warn"``: warn instead; ``False``: leave as is.
        keep_top: keep this many best checkpoints by ``monitor`` in ``checkpoints/top/`` (0: none).
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
    check_run_dir(run_dir, (2 + keep_top) * checkpoint_bytes(model))
    distributed = devices > 1 or num_nodes > 1
    checkpoints = run_dir / "checkpoints"
    all_callbacks: list[Callback] = [
        EpochHistory(run_dir / "history.json"),
        RunCheckpoint(
            dirpath=checkpoints,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
        *(
            [TopCheckpoints(dirpath=checkpoints / "top", monitor=monitor, mode=mode, save_top_k=keep_top)]
            if keep_top
            else []
        ),
        LearningRateMonitor(logging_interval="epoch"),
        RandomState(),
        StopOnNonFiniteLoss(checkpoints / "last.ckpt"),
        *callbacks,
        # Last of all (Lightning runs checkpoint callbacks after the others, in this order), so that
        # last.ckpt holds every other checkpoint callback's state of this epoch: a resumed run's
        # best, top-k and callers' checkpoints continue from it. Not save_last: Lightning 2.6
        # writes "last" only in epochs that also wrote a top-k file.
        RunCheckpoint(
            dirpath=checkpoints, filename="last", save_on_train_epoch_end=True, enable_version_counter=False
        ),
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
        deterministic=deterministic or None,
        **trainer_kwargs,
    )
    if sync_batchnorm and distributed and trainer.strategy.root_device.type == "cpu":
        raise ValueError("sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on CPU")
    return trainer


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose saved paths follow the run directory when it is copied or moved.

    Lightning's callback forgets the best score and paths when the checkpoint folder changed (and
    would otherwise delete or export files of the original run). This one maps every path saved
    under the old folder to the same name under the new one, then loads the state as usual.
    """

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key, so checkpoints written by either class load into the other."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:

            def moved(path: Any) -> Any:
                if not isinstance(path, str) or not path:
                    return path
                try:
                    return str(Path(new) / Path(path).relative_to(old))
                except ValueError:
                    return path

            state_dict = {
                **state_dict,
                "dirpath": new,
                "best_model_path": moved(state_dict.get("best_model_path")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                "last_model_path": moved(state_dict.get("last_model_path")),
                "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)


class TopCheckpoints(RunCheckpoint):
    """The ``save_top_k`` best checkpoints by ``monitor``, beside ``best`` (with a state of its own)."""

    def __init__(self, *, dirpath: Path, monitor: str, mode: str, save_top_k: int) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="{epoch}-{" + monitor + ":.4f}",
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return super().state_key + "[top]"


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """A generous size of one training checkpoint: weights and buffers, three times (optimizer state)."""
    tensors = [*model.parameters(), *model.buffers()]
    return 3 * sum(t.numel() * t.element_size() for t in tensors)


def check_run_dir(run_dir: str | Path, needed_bytes: int) -> None:
    """Fails before training when ``run_dir`` cannot hold the run.

    Creates ``run_dir``, writes and removes a probe file, and checks that the file system has
    room for ``needed_bytes`` plus a spare for logs.

    Raises:
        OSError: the folder cannot be created or written (``errno`` of the cause), or the disk has
            less free space than needed (``ENOSPC``); the one-line message names the folder.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OSError(
            error.errno, f"run directory '{run_dir}' is not writable ({error.strerror}); choose another --out"
        ) from None
    free = shutil.disk_usage(run_dir).free
    if free < needed_bytes + _SPARE_BYTES:
        raise OSError(
            errno.ENOSPC,
            f"run directory '{run_dir}' has {free / 2**20:.1f} MiB free, the run needs about "
            f"{(needed_bytes + _SPARE_BYTES) / 2**20:.1f} MiB (checkpoints, logs); free space or choose "
            "another --out",
        )


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """``run_dir/checkpoints/last.ckpt`` if it exists."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def resume_checkpoint(run_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint a run continues from, or None for a fresh run.

    Args:
        run_dir: the run directory.
        resume: ``None`` (start afresh), ``"last"`` (``run_dir``'s last checkpoint) or a checkpoint path.

    Raises:
        ValueError: a fresh run in a directory that already holds checkpoints.
        FileNotFoundError: the checkpoint to resume from does not exist.
    """
    run_dir = Path(run_dir)
    if resume is None:
        if last_checkpoint(run_dir) is not None:
            raise ValueError(
                f"run directory '{run_dir}' already holds checkpoints: resume it or choose another "
                "run directory"
            )
        return None
    path = last_checkpoint(run_dir) if resume == "last" else Path(resume)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at '{path or run_dir / 'checkpoints' / 'last.ckpt'}'")
    return path


def resume_epoch(checkpoint: str | Path | None) -> int:
    """The epoch a run resumed from ``checkpoint`` starts with: the epochs finished (0 for no checkpoint).

    The training loader must be built for this epoch (``awconv.engine.loaders``): on a resumed run
    Lightning creates the first epoch's iterator before it tells the sampler the epoch.
    """
    if checkpoint is None:
        return 0
    return int(AtomicCheckpointIO().load_checkpoint(checkpoint)["epoch"]) + 1


def write_json(path: str | Path, content: Any) -> None:
    """Writes ``content`` as indented JSON, atomically."""
    text = json.dumps(content, indent=2, sort_keys=True, default=str).encode()
    atomic_write(path, lambda file: file.write(text))
