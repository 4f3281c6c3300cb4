"""``StopOnNonFiniteLoss``: a Lightning callback that ends training when the loss turns NaN or Inf.

A diverged run would otherwise keep training on NaN weights and overwrite ``last.ckpt`` with
them at the end of the epoch. The callback checks every training step's loss; on any process of a
DDP job a non-finite loss stops all of them, before the epoch ends, so the checkpoints on disk
still hold the last good epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["StopOnNonFiniteLoss"]


class StopOnNonFiniteLoss(Callback):
    """Raises ``FloatingPointError`` naming the epoch, the batch and the last good checkpoint.

    Args:
        checkpoint: the checkpoint a resumed run would start from, named in the message.
    """

    def __init__(self, checkpoint: str | Path) -> None:
        self.checkpoint = Path(checkpoint)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = loss.detach() if isinstance(loss, torch.Tensor) else None
        bad = value is not None and not bool(torch.isfinite(value).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        kept = (
            f"the last good checkpoint is '{self.checkpoint}' (resume with --resume)"
            if self.checkpoint.is_file()
            else "no checkpoint was written yet"
        )
        local = value is not None and value.numel() == 1 and bad
        shown = f"{value.item()}" if local else "non-finite (on another process)"
        raise FloatingPointError(
            f"training loss is {shown} at epoch {trainer.current_epoch}, batch {batch_idx}: training "
            f"stopped; {kept}. Lower the learning rate, add warm-up or --clip-grad, or check the data "
            "for NaN/Inf values"
        )
