"""``awconv.engine.history``: finding a trainer's EpochHistory and the machines its rows name."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from awconv.engine.history import EpochHistory, epoch_history, machines_of
from awconv.engine.trainer import build_trainer


def test_epoch_history_is_the_callback_that_writes_history_json(tmp_path: Path) -> None:
    trainer = build_trainer(
        tmp_path / "run", model=torch.nn.Linear(2, 2), max_epochs=1, monitor="val_top1", progress_bar=False
    )
    history = epoch_history(trainer)
    assert isinstance(history, EpochHistory) and history.path == tmp_path / "run" / "history.json"


def test_epoch_history_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="no EpochHistory callback"):
        epoch_history(pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False))


def test_machines_of_names_each_machine_once_in_the_order_met() -> None:
    rows = [{"epoch": 1, "machine": "B"}, {"epoch": 2, "machine": "A"}, {"epoch": 3}]
    rows.append({"epoch": 4, "machine": "B"})
    assert machines_of(rows) == ["B", "A"]
