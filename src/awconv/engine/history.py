"""``EpochHistory``: one row of metrics per epoch, kept in checkpoints and written as JSON."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from awconv.engine.checkpoint import atomic_write
from awconv.engine.machine import describe_machine

__all__ = ["EpochHistory", "epoch_history", "machines_of", "read_history"]


class EpochHistory(pl.Callback):
    """Records ``trainer.callback_metrics`` (epoch aggregates) at the end of every training epoch.

    Each row holds the epoch's metrics, ``lr``, the learning rate of the epoch's first step (first
    parameter group), and ``train_images_per_s``, the training images of all processes per second
    from the epoch's start to its last training batch (loading included, validation not); the
    progress bar shows the running rate as ``img/s``; and ``machine``, where the epoch ran
    (``describe_machine``: a run resumed on another machine shows both). ``LearningRateMonitor``'s
    own ``lr-*`` entries go to the loggers only. The rows
    and ``fit_seconds``, the time spent in the finished epochs (training and validation), travel in
    checkpoints (``state_dict``), so a resumed run keeps the epochs and the time before the
    interruption. Rank 0 rewrites ``path`` atomically after every epoch.

    Args:
        path: the JSON file, a list of ``{"epoch": int, "<metric>": float, ..., "lr": float,
            "machine": str}``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float | str]] = []
        self.fit_seconds = 0.0
        self._epoch_start = 0.0
        self._epoch_lr = math.nan
        self._images = 0
        self._images_per_s = math.nan

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._images = 0
        optimizers = trainer.optimizers
        self._epoch_lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else math.nan

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += len(batch[0]) * trainer.world_size
        self._images_per_s = self._images / max(time.perf_counter() - self._epoch_start, 1e-9)
        pl_module.log("img/s", self._images_per_s, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_seconds += time.perf_counter() - self._epoch_start
        row: dict[str, float | str] = {"epoch": trainer.current_epoch + 1}
        for name, value in sorted(trainer.callback_metrics.items()):
            if not name.endswith("_step") and not name.startswith("lr-") and name != "img/s":
                row[name.removesuffix("_epoch")] = float(value)
        row["lr"] = self._epoch_lr
        row["train_images_per_s"] = self._images_per_s
        row["machine"] = describe_machine(pl_module.device)
        self.rows.append(row)
        if trainer.is_global_zero:
            text = json.dumps(self.rows, indent=1).encode()
            atomic_write(self.path, lambda file: file.write(text))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "fit_seconds": self.fit_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]
        self.fit_seconds = float(state_dict.get("fit_seconds", 0.0))


def epoch_history(trainer: pl.Trainer) -> EpochHistory:
    """The ``EpochHistory`` callback of a trainer built by ``awconv.engine.trainer.build_trainer``."""
    history = next((callback for callback in trainer.callbacks if isinstance(callback, EpochHistory)), None)
    if history is None:
        raise ValueError("trainer has no EpochHistory callback: build it with build_trainer")
    return history


def read_history(path: str | Path) -> list[dict[str, float | str]]:
    """The rows written by ``EpochHistory``."""
    return json.loads(Path(path).read_text())


def machines_of(rows: list[dict[str, float | str]]) -> list[str]:
    """The machines that ``EpochHistory`` rows name, each once, in the order the run met them."""
    return list(dict.fromkeys(str(row["machine"]) for row in rows if "machine" in row))
