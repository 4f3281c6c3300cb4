"""Atomic checkpoint writes, weights_only loading and safetensors export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from awconv.engine.checkpoint import (
    AtomicCheckpointIO,
    atomic_write,
    export_safetensors,
    load_state_dict,
    load_weights,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_write(path, lambda file: file.write(b"old complete checkpoint"))

    def killed_mid_write(file) -> None:
        file.write(b"half of a new chec")
        raise KeyboardInterrupt  # the run is killed while writing

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, killed_mid_write)
    assert path.read_bytes() == b"old complete checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_io_round_trip_is_atomic(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    checkpoint = {"state_dict": {"model.w": torch.arange(3.0)}, "epoch": 2, "hyper_parameters": {"lr": 0.1}}
    io.save_checkpoint(checkpoint, tmp_path / "sub" / "a.ckpt")
    loaded = io.load_checkpoint(tmp_path / "sub" / "a.ckpt")
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["model.w"], torch.arange(3.0))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.ckpt"]


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_io_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(ValueError, match="was refused"):
        AtomicCheckpointIO().load_checkpoint(path)
    with pytest.raises(ValueError, match="was refused"):
        load_state_dict(path)


def test_safetensors_export_and_checkpoint_loading(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    export_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.ckpt")
    for name in ("w.safetensors", "w.ckpt"):
        other = load_weights(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), tmp_path / name)
        for key, value in model.state_dict().items():
            assert torch.equal(other.state_dict()[key], value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "missing.safetensors")


def test_checkpoint_loading_keeps_only_the_model_prefix(tmp_path: Path) -> None:
    """A Lightning state dict also holds the loss's and metrics' tensors: only ``model.*`` is the model."""
    model = nn.Conv2d(1, 2, 3)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {"criterion.weight": torch.ones(2), "ema.model.weight": torch.zeros(2, 1, 3, 3)}
    torch.save({"state_dict": state}, tmp_path / "w.ckpt")
    loaded = load_state_dict(tmp_path / "w.ckpt")
    assert sorted(loaded) == ["bias", "weight"]
    assert torch.equal(loaded["weight"], model.weight) and torch.equal(loaded["bias"], model.bias)
    assert sorted(load_state_dict(tmp_path / "w.ckpt", prefix="ema.")) == ["model.weight"]
    other = load_weights(nn.Conv2d(1, 2, 3), tmp_path / "w.ckpt")
    assert torch.equal(other.weight, model.weight)
