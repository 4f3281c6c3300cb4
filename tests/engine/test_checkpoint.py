"""Atomic checkpoint writes, weights_only loading and safetensors export."""

from __future__ import annotations

import os
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


def test_atomic_write_goes_through_a_hidden_temporary_file_beside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file lies in the target's folder (``os.replace`` is atomic only within one
    file system), is named ``.NAME.*.tmp``, and the folder itself is fsynced after the rename."""
    path = tmp_path / "new" / "deeper" / "last.ckpt"
    synced: list[str] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    during: list[str] = []
    atomic_write(path, lambda file: during.extend(p.name for p in path.parent.iterdir()))
    (temporary,) = during
    assert temporary.startswith(".last.ckpt.") and temporary.endswith(".tmp")
    assert synced == [str(path.parent / temporary), str(path.parent)]
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_checkpoint_io_errors_and_map_location(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    with pytest.raises(
        TypeError, match=r"^storage_options is not supported by AtomicCheckpointIO, got \{\}$"
    ):
        io.save_checkpoint({"state_dict": {}}, tmp_path / "a.ckpt", storage_options={})
    with pytest.raises(FileNotFoundError, match=r"^checkpoint '.*missing\.ckpt' does not exist$"):
        io.load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"epoch": 1}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match=r"^checkpoint '.*plain\.ckpt' is not a Lightning checkpoint"):
        io.load_checkpoint(tmp_path / "plain.ckpt")
    io.save_checkpoint({"state_dict": {"model.w": torch.ones(2)}}, tmp_path / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "a.ckpt", map_location="meta")["state_dict"]["model.w"].is_meta


def test_load_state_dict_refuses_what_is_not_tensors(tmp_path: Path) -> None:
    torch.save({"weight": torch.ones(1), "epoch": 3}, tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match=r"^weights file '.*mixed\.pth' holds no state dict of tensors$"):
        load_state_dict(tmp_path / "mixed.pth")


FIRST_THREE = "['1.weight', '1.bias', '2.weight'] (4)"


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        (nn.Sequential(nn.Conv2d(1, 2, 1)), f"missing {FIRST_THREE}, unexpected [] (0), other shape [] (0)"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 1), *(nn.Conv2d(2, 2, 1) for _ in range(4))),
            "missing [] (0), unexpected ['3.weight', '3.bias', '4.weight'] (4), other shape [] (0)",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 3, 1), nn.Conv2d(3, 3, 1)),
            f"missing [] (0), unexpected [] (0), other shape {FIRST_THREE}",
        ),
    ],
    ids=["missing", "unexpected", "other-shape"],
)
def test_load_weights_names_the_differences(tmp_path: Path, saved: nn.Module, expected: str) -> None:
    torch.save(saved.state_dict(), tmp_path / "w.pth")
    target = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError) as error:
        load_weights(target, tmp_path / "w.pth")
    assert str(error.value) == (
        f"weights file '{tmp_path / 'w.pth'}' does not fit Sequential: {expected}; "
        "expected weights of the same model and options"
    )


def test_export_safetensors_copies_tied_tensors(tmp_path: Path) -> None:
    """safetensors refuses tensors that share memory; tied weights are exported as two copies."""
    weight = torch.randn(3, 4)
    export_safetensors({"encoder.weight": weight, "decoder.weight": weight}, tmp_path / "tied.safetensors")
    loaded = load_state_dict(tmp_path / "tied.safetensors")
    assert torch.equal(loaded["encoder.weight"], weight) and torch.equal(loaded["decoder.weight"], weight)
