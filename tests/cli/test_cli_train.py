"""``awconv train`` / ``eval`` / ``compare``: end to end on tiny data, one-line errors, DDP on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_data import make_cifar, make_image_folder

from awconv.cli import main

TINY = ["--epochs", "1", "--batch-size", "8", "--image-size", "8", "--workers", "0", "--accelerator", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine more threads spin against each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_then_eval(tmp_path: Path, capsys) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=16, val=8, num_classes=2)}"
    out = tmp_path / "run"
    args = ["train", "test_resnet", "--data", data, "--out", str(out), "--no-progress", *TINY]
    assert main([*args, "--model-arg", "drop_rate=0.1", "--optimizer", "adamw", "--lr", "0.001"]) == 0
    assert "best val top-1" in capsys.readouterr().out
    assert main([*args, "--resume", "--epochs", "2"]) == 0  # continue the same run for one more epoch
    eval_args = ["eval", "test_resnet", "--weights", str(out / "best.safetensors"), "--data", data]
    assert main([*eval_args, "--image-size", "8", "--workers", "0", "--accelerator", "cpu"]) == 0
    assert "top-1" in capsys.readouterr().out
    eval_args[3] = str(out / "checkpoints" / "best.ckpt")
    assert main([*eval_args, "--image-size", "8", "--workers", "0", "--accelerator", "cpu"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "no_such_model", "--data", "digits"], "unknown model 'no_such_model'"),
        (["train", "test_resnet", "--data", "nosuchdata"], "unknown data set 'nosuchdata'"),
        (["train", "test_resnet", "--data", "imagefolder:/no/such/dir"], "does not exist"),
        (["train", "test_resnet", "--data", "digits", "--model-arg", "oops"], "KEY=VALUE"),
        (["eval", "test_resnet", "--weights", "/no/such.safetensors", "--data", "digits"], "does not exist"),
        (["compare", "--models", "no_such_model", "--data", "digits"], "unknown model"),
    ],
    ids=[
        "unknown-model",
        "unknown-data",
        "missing-dir",
        "bad-model-arg",
        "missing-weights",
        "compare-unknown",
    ],
)
def test_bad_input_prints_one_line_and_exits_2(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    assert main([*argv, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_empty_class_folder_is_reported(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path)
    (root / "train" / "c").mkdir()
    (root / "val" / "c").mkdir()
    assert main(["train", "test_resnet", "--data", f"imagefolder:{root}", "--workers", "0"]) == 2
    assert "holds no image files" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path: Path) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=32, val=8, num_classes=2)}"
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "awconv",
        "train",
        "test_resnet",
        "--data",
        data,
        "--out",
        str(out),
        *TINY,
    ]
    result = subprocess.run(
        [*command, "--devices", "2", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'world_size": 2' in (out / "config.json").read_text()
    assert (out / "best.safetensors").is_file() and (out / "checkpoints" / "last.ckpt").is_file()


def test_sync_batchnorm_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    from awconv.engine.trainer import build_trainer

    with pytest.raises(ValueError, match="sync_batchnorm needs GPUs"):
        build_trainer(
            tmp_path,
            model=torch.nn.Linear(2, 2),
            max_epochs=1,
            monitor="val_top1",
            accelerator="cpu",
            devices=2,
            sync_batchnorm=True,
        )
