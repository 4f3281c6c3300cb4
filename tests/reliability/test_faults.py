"""Faults during training: kill -9 and resume, unwritable or full run directories, a diverging loss."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
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


# Loader workers and dropout: the data order, the augmentation and the model's random draws all matter.
_WORKERS_2 = [*TINY[:4], "--workers", "2", "--model-arg", "drop_rate=0.2", *TINY[6:]]


def _train(data: str, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", "test_resnet", "--data", data, "--out", str(out), "--epochs", str(epochs), *TINY, *extra]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("awconv ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def _kill_after_first_checkpoint(command: list[str], run_dir: Path, cwd: Path, timeout: float = 600) -> int:
    """Starts ``command`` in its own process group, SIGKILLs the group once ``run_dir`` holds its first
    checkpoint; returns the epoch that checkpoint was written after (0-based)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # into the next epoch
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # the run, its loader workers and DDP processes
    lost = time.time() - last.stat().st_mtime if last.is_file() else float("nan")
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-3000:]
    epoch = _epoch(last)
    print(f"\nkilled {lost:.2f} s after the checkpoint of epoch {epoch + 1}")
    return epoch


def _last(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_state_dict(a), load_state_dict(b)
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert different == [], f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_kill_9_then_resume_of_a_moved_run_equals_uninterrupted_run(tmp_path: Path, monkeypatch) -> None:
    """SIGKILL a real ``awconv train --workers 2`` (dropout on) after its first checkpoint; copy the run
    directory elsewhere and resume the copy from a third working directory, giving no option but
    ``--out``, ``--resume`` and another ``--workers``.

    The copy ends bit-identical to an uninterrupted run; the original is left as it was; the data path,
    given relative to the first working directory, was saved absolute.
    """
    epochs, first_cwd = 3, tmp_path / "first"
    make_cifar(first_cwd / "data", train=32, val=8, num_classes=2)
    argv = ["train", "test_resnet", "--data", "cifar:data", "--epochs", str(epochs), *_WORKERS_2]
    killed = first_cwd / "run"
    command = [sys.executable, "-m", "awconv", *argv, "--out", "run"]
    saved = _kill_after_first_checkpoint(command, killed, first_cwd)
    assert saved < epochs - 1, "the run finished before the kill: the test did not test a kill"
    done = len(json.loads((killed / "history.json").read_text()))
    assert done - (saved + 1) <= 1, f"{done} epochs logged, checkpoint after epoch {saved + 1}"
    config = json.loads((killed / "config.json").read_text())
    assert config["data"] == f"cifar:{first_cwd / 'data'}" and config["run_dir"] == "."

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(killed, moved)
    (tmp_path / "third").mkdir()
    monkeypatch.chdir(tmp_path / "third")
    resume = ["train", "test_resnet", "--out", str(moved), "--resume", "--no-progress"]
    assert main([*resume, "--workers", "1"]) == 0  # the batches do not depend on the worker count
    assert _epoch(moved / "checkpoints" / "last.ckpt") == epochs - 1
    assert len(json.loads((killed / "history.json").read_text())) == done  # the original run is untouched
    assert len(json.loads((moved / "history.json").read_text())) == epochs

    straight = tmp_path / "straight"
    assert main([*argv[:3], f"cifar:{first_cwd / 'data'}", *argv[4:], "--out", str(straight)]) == 0
    _assert_same_weights(_last(moved), _last(straight))
    _assert_same_weights(moved / "best.safetensors", straight / "best.safetensors")
    metrics = json.loads((moved / "metrics.json").read_text())
    assert metrics["fit_seconds"] > 0 and metrics["epochs"] == epochs


@pytest.mark.slow
def test_kill_9_then_resume_with_the_recipe_toolbox_equals_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL ``awconv train --workers 2`` with EMA, top-k checkpoints, Mixup/CutMix, timm RandAugment
    and random erasing after its first checkpoint; the resumed run's weights, EMA weights and kept
    checkpoints equal an uninterrupted run's."""
    epochs = 3
    data = f"cifar:{make_cifar(tmp_path / 'data', train=32, val=8, num_classes=3)}"
    toolbox = ["--ema", "0.9", "--keep-top", "2", "--mixup", "0.2", "--cutmix", "1.0"]
    toolbox += ["--auto-augment", "rand-m9-mstd0.5", "--random-erase", "0.5", "--grad-accum", "2"]
    argv = ["train", "test_resnet", "--data", data, "--epochs", str(epochs), *_WORKERS_2, *toolbox]
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "awconv", *argv, "--out", str(killed)]
    saved = _kill_after_first_checkpoint(command, killed, tmp_path)
    assert saved < epochs - 1, "the run finished before the kill: the test did not test a kill"
    assert main(["train", "test_resnet", "--out", str(killed), "--resume", "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert main([*argv, "--out", str(straight), "--no-progress"]) == 0
    a = torch.load(_last(killed), weights_only=True)["state_dict"]
    b = torch.load(_last(straight), weights_only=True)["state_dict"]
    assert any(key.startswith("ema.module.") for key in a) and a.keys() == b.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []
    for name in ("best.safetensors", "best-ema.safetensors"):
        _assert_same_weights(killed / name, straight / name)
    kept = [sorted(p.name for p in (run / "checkpoints" / "top").iterdir()) for run in (killed, straight)]
    assert len(kept[0]) == 2 and kept[0] == kept[1]


def _detect_argv(shapes: dict, out: Path, epochs: int) -> list[str]:
    (train_dir, train_json), (val_dir, val_json) = shapes["train"], shapes["val"]
    return [
        "detect", "train", "--model", "fasterrcnn_aw_resnet18_fpn",
        "--data", f"coco:{train_dir},{train_json}", "--val-data", f"coco:{val_dir},{val_json}",
        "--min-size", "32", "--max-size", "32", "--batch-size", "2", "--workers", "2", "--warmup-iters", "2",
        "--epochs", str(epochs), "--detector-arg", "box_batch_size_per_image=16",
        "--accelerator", "cpu", "--no-progress", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_kill_9_then_resume_of_a_detector_equals_uninterrupted_run(tmp_path: Path) -> None:
    """The same for ``awconv detect train --workers 2`` on a tiny ``make-shapes`` set (slow: about
    3 detector runs; ``test_resumed_detector_equals_uninterrupted_run`` is its fast variant)."""
    from awconv.data.shapes import make_shapes

    shapes = make_shapes(tmp_path / "shapes", images=9, size=32, seed=0, val_fraction=0.34)
    epochs, killed = 3, tmp_path / "killed"
    saved = _kill_after_first_checkpoint(
        [sys.executable, "-m", "awconv", *_detect_argv(shapes, killed, epochs)], killed, tmp_path
    )
    assert saved < epochs - 1, "the run finished before the kill: the test did not test a kill"
    assert main([*_detect_argv(shapes, killed, epochs), "--resume"]) == 0
    assert main(_detect_argv(shapes, tmp_path / "straight", epochs)) == 0
    _assert_same_weights(_last(killed), _last(tmp_path / "straight"))


class _StopAfter(pl.Callback):
    """Ends a run after ``epochs`` epochs, once their checkpoints are written, as a killed job would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_resumed_detector_equals_uninterrupted_run(tmp_path: Path) -> None:
    """Detection, in one process: 1 epoch, stop, resume to 2 epochs with a loader worker; bit-identical.

    One worker suffices: a worker prefetches at once, which is what a resume must get right (the
    first epoch's loader is made before Lightning sets the sampler's epoch).
    """
    from awconv.data.shapes import make_shapes
    from awconv.engine.detection import DetectionConfig, train_detector

    shapes = make_shapes(tmp_path / "shapes", images=6, size=32, seed=0, val_fraction=0.34)
    small = {"rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "box_batch_size_per_image": 16}
    config = DetectionConfig(
        "fasterrcnn_resnet18_fpn", tuple(map(str, shapes["train"])), tuple(map(str, shapes["val"])),
        str(tmp_path / "straight"), detector_kwargs=small, min_size=32, max_size=32, epochs=2,
        batch_size=2, warmup_iters=2, workers=1, accelerator="cpu", progress_bar=False,
    )  # fmt: skip
    train_detector(config)
    interrupted = dataclasses.replace(config, run_dir=str(tmp_path / "resumed"))
    train_detector(interrupted, callbacks=[_StopAfter(1)])
    train_detector(dataclasses.replace(interrupted, resume="last"))
    _assert_same_weights(_last(tmp_path / "resumed"), _last(tmp_path / "straight"))


@pytest.mark.slow
def test_kill_9_then_resume_under_ddp_equals_uninterrupted_run(tmp_path: Path, data: str) -> None:
    """Two DDP processes on the CPU (gloo), ``--workers 2``: killed after the first checkpoint, resumed
    under DDP, bit-identical to an uninterrupted DDP run."""
    epochs, killed = 3, tmp_path / "killed"

    def argv(out: Path) -> list[str]:
        options = ["--data", data, "--out", str(out), "--epochs", str(epochs), "--devices", "2", *_WORKERS_2]
        return [sys.executable, "-m", "awconv", "train", "test_resnet", *options]

    saved = _kill_after_first_checkpoint(argv(killed), killed, tmp_path)
    assert saved < epochs - 1, "the run finished before the kill: the test did not test a kill"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in ([*argv(killed), "--resume"], argv(tmp_path / "straight")):
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_weights(_last(killed), _last(tmp_path / "straight"))


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
