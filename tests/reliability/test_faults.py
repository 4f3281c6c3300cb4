"""Faults during training: kill -9 and resume, unwritable or full run directories, a diverging loss."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from safetensors import safe_open
from tiny_data import make_cifar

from awconv.cli import main
from awconv.engine import checkpoint as checkpoint_module
from awconv.engine import trainer as trainer_module
from awconv.engine.checkpoint import load_state_dict

TINY = ["--batch-size", "4", "--image-size", "8", "--workers", "0", "--accelerator", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread_fresh_logging():
    """One intra-op thread (equal to the subprocesses'), and no log handler left on a closed capture."""
    threads, handlers = torch.get_num_threads(), list(logging.root.handlers)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    logging.root.handlers[:] = handlers


@pytest.fixture()
def data(tmp_path: Path) -> str:
    return f"cifar:{make_cifar(tmp_path / 'data', train=32, val=8, num_classes=2)}"


def _train(data: str, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", "test_resnet", "--data", data, "--out", str(out), "--epochs", str(epochs), *TINY, *extra]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("awconv ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path: Path, data: str) -> None:
    """SIGKILL a real ``awconv train`` mid-run; ``--resume`` loses at most one epoch and ends equal."""
    epochs, killed = 6, tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "awconv", *_train(data, killed, epochs)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    lost = time.time() - last.stat().st_mtime if last.is_file() else float("nan")
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    done = len(json.loads((killed / "history.json").read_text()))
    saved = _epoch(last)
    assert saved < epochs - 1, "the run finished before the kill: the test did not test a kill"
    assert done - (saved + 1) <= 1, f"{done} epochs logged, checkpoint after epoch {saved + 1}"
    print(f"\nkilled {lost:.2f} s after the checkpoint of epoch {saved + 1}/{epochs}; {done} epochs logged")
    assert main([*_train(data, killed, epochs), "--resume"]) == 0
    straight = tmp_path / "straight"
    assert main(_train(data, straight, epochs)) == 0
    resumed_weights = load_state_dict(killed / "checkpoints" / "last.ckpt")
    straight_weights = load_state_dict(straight / "checkpoints" / "last.ckpt")
    assert _epoch(killed / "checkpoints" / "last.ckpt") == epochs - 1
    assert resumed_weights.keys() == straight_weights.keys()
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)
    with safe_open(killed / "best.safetensors", framework="pt") as exported:
        assert set(exported.keys()) == set(straight_weights)


def test_unwritable_run_directory_fails_before_training(tmp_path: Path, data: str, capsys) -> None:
    """The run directory's parent is a regular file: no ``chmod`` needed, so it also holds as root."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(_train(data, blocker / "run", 1)) == 2
    line = _error_line(capsys)
    assert "a_file/run' is not writable" in line and "--out" in line


def test_full_disk_fails_before_training(tmp_path: Path, data: str, capsys, monkeypatch) -> None:
    monkeypatch.setattr(trainer_module.shutil, "disk_usage", lambda path: _Usage())
    out = tmp_path / "run"
    assert main(_train(data, out, 1)) == 2
    assert "MiB free, the run needs about" in _error_line(capsys)
    assert not (out / "checkpoints").exists() and not (out / "history.json").exists()


class _Usage:
    total, used, free = 2**30, 2**30 - 2**20, 2**20


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, data: str, capsys, monkeypatch
) -> None:
    """The disk fills up while the second epoch's checkpoint is written: the first one survives."""
    save = torch.save

    def save_until_full(obj, file) -> None:
        if obj.get("epoch", 0) >= 1:
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, file)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_full)
    out = tmp_path / "run"
    assert main(_train(data, out, 2)) == 2
    assert "No space left on device" in _error_line(capsys)
    assert _epoch(out / "checkpoints" / "last.ckpt") == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


class _PoisonWeights(pl.Callback):
    """Sets one weight to NaN at the first batch of epoch 1: a model that diverged."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == 1 and batch_idx == 0:
            with torch.no_grad():
                next(pl_module.model.parameters()).view(-1)[0] = float("nan")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, data: str) -> None:
    from awconv.engine.classification import TrainConfig, train_classifier

    out = tmp_path / "run"
    config = TrainConfig(
        "test_resnet", data, str(out), epochs=3, batch_size=4, image_size=8, workers=0, accelerator="cpu"
    )
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1, batch 0.*last good checkpoint"):
        train_classifier(config, callbacks=[_PoisonWeights()])
    last = out / "checkpoints" / "last.ckpt"
    assert _epoch(last) == 0
    assert all(torch.isfinite(v).all() for v in load_state_dict(last).values() if v.is_floating_point())


def test_diverging_learning_rate_is_one_clear_line(tmp_path: Path, data: str, capsys) -> None:
    assert main([*_train(data, tmp_path / "run", 1), "--lr", "1e30"]) == 2
    line = _error_line(capsys)
    assert "training loss is" in line and "no checkpoint was written yet" in line
