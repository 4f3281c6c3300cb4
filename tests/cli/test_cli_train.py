"""``awconv train`` / ``eval`` / ``compare``: end to end on tiny data, one-line errors, DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_data import make_cifar, make_image_folder

from awconv.cli import main
from awconv.engine.machine import describe_machine

TINY = ["--epochs", "1", "--batch-size", "8", "--image-size", "8", "--workers", "0", "--accelerator", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine more threads spin against each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_resume_and_eval(tmp_path: Path, capsys, caplog, monkeypatch) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=16, val=8, num_classes=2)}"
    out = tmp_path / "run"
    args = ["train", "test_resnet", "--data", data, "--out", str(out), "--no-progress", *TINY]
    assert main([*args, "--model-arg", "drop_rate=0.1", "--optimizer", "adamw", "--lr", "0.001"]) == 0
    assert capsys.readouterr().out.count("best val top-1") == 1
    assert not any("best val top-1" in record.getMessage() for record in caplog.records)  # said once
    (row,) = json.loads((out / "history.json").read_text())
    assert row["lr"] == 0.001 and not [key for key in row if key.startswith("lr-")]  # one lr per row
    assert "val_top5" not in row  # 2 classes: a top-5 would always be 100%

    # A resume that changes a saved option is one line naming it, the saved and the given value.
    assert main([*args, "--resume", "--lr", "0.5", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size was 8, now 4; --lr was 0.001, now 0.5" in err[0], err
    assert main(["train", "resnet20_cifar", "--out", str(out), "--resume"]) == 2
    assert "MODEL was 'test_resnet', now 'resnet20_cifar'" in capsys.readouterr().err

    # Continue for one more epoch; the fit time saved in the checkpoint is added to, not replaced.
    last = out / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    (history_key,) = [key for key in checkpoint["callbacks"] if key.startswith("EpochHistory")]
    checkpoint["callbacks"][history_key]["fit_seconds"] = 1000.0
    torch.save(checkpoint, last)
    # ... on another machine: each epoch's row names where it ran, and metrics.json both machines.
    monkeypatch.setattr("awconv.engine.history.describe_machine", lambda device: f"machine B ({device})")
    assert main([*args, "--resume", "--epochs", "2", "--lr", "0.001"]) == 0  # same lr: allowed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fit_seconds"] > 1000
    here = describe_machine(torch.device("cpu"))
    assert metrics["machines"] == [here, "machine B (cpu)"]
    assert [row["machine"] for row in json.loads((out / "history.json").read_text())] == metrics["machines"]

    # eval reads the run's config.json (image size 8, model arguments) beside the weights.
    history = json.loads((out / "history.json").read_text())
    best = max(history, key=lambda r: r["val_top1"])
    eval_args = ["eval", "--weights", str(out / "best.safetensors"), "--workers", "0", "--accelerator", "cpu"]
    assert main([*eval_args, "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert f"loss {best['val_loss']:.4f}" in line and "top-5" not in line
    assert main(["eval", "--run", str(out), "--workers", "0", "--accelerator", "cpu"]) == 0
    assert f"loss {best['val_loss']:.4f}" in capsys.readouterr().out
    caplog.clear()
    eval_args[2] = str(out / "checkpoints" / "best.ckpt")
    assert main([*eval_args, "--data", data, "--image-size", "16"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("--image-size 16 contradicts the run" in w and "trained with 8" in w for w in warnings)


def test_eval_without_a_run_needs_the_model(tmp_path: Path, capsys) -> None:
    assert main(["eval", "--weights", str(tmp_path / "w.safetensors"), "--data", "digits"]) == 2
    assert "eval needs MODEL (or --run" in capsys.readouterr().err


def test_top5_only_with_more_than_five_classes() -> None:
    from awconv.engine.classification import ClassifierModule

    assert list(ClassifierModule("test_resnet", num_classes=5).val_metrics["val"]) == ["top1"]
    assert ClassifierModule("test_resnet", num_classes=6).val_metrics["val"]["top5"].top_k == 5


def test_unreadable_validation_split_fails_before_training(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path / "data")
    for image in (root / "val").rglob("*.*"):
        image.write_bytes(b"not an image")
    out = tmp_path / "run"
    argv = ["train", "test_resnet", "--data", f"imagefolder:{root}", "--out", str(out), *TINY]
    assert main([*argv[:-6], "--workers", "2", "--accelerator", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("awconv")]
    assert len(err) == 1 and "the validation split of --data imagefolder:" in err[0], err
    assert f"no image under '{root / 'val'}' could be read" in err[0]
    assert not (out / "checkpoints").exists()


def test_a_loader_worker_error_reaches_the_user_as_its_own_line() -> None:
    from torch.utils.data import DataLoader, Dataset

    from awconv.cli import one_line

    class Unreadable(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            raise ValueError(f"image 'val/{index}.png' is truncated")

    with pytest.raises(ValueError) as raised:
        next(iter(DataLoader(Unreadable(), num_workers=1)))
    assert str(raised.value).startswith("Caught ValueError in DataLoader worker process 0")
    assert one_line(raised.value) == "image 'val/0.png' is truncated (in a data-loader worker)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "no_such_model", "--data", "digits"], "unknown model 'no_such_model'"),
        (["train", "resnet_18", "--data", "digits"], "closest names: resnet18, "),
        (
            ["train", "aw_resnet20_cifar", "--data", "digits", "--model-arg", "genrator=lowrank"],
            "--model-arg genrator='lowrank': aw_resnet20_cifar takes no argument 'genrator' "
            "(closest: generator)",
        ),
        (["train", "test_resnet", "--data", "digits", "--lr", "-1"], "--lr must be a positive number"),
        (["train", "test_resnet", "--data", "digits", "--epochs", "0"], "--epochs must be a positive int"),
        (
            ["train", "test_resnet", "--data", "digits", "--warmup-epochs", "5", "--epochs", "1"],
            "--warmup-epochs 5.0 is longer than the run (--epochs 1)",
        ),
        (["train", "test_resnet", "--out", "nowhere"], "required: --data"),
        (["train", "test_resnet", "--data", "nosuchdata"], "unknown data set 'nosuchdata'"),
        (["train", "test_resnet", "--data", "imagefolder:/no/such/dir"], "does not exist"),
        (["train", "test_resnet", "--data", "digits", "--model-arg", "oops"], "KEY=VALUE"),
        (["eval", "test_resnet", "--weights", "/no/such.safetensors", "--data", "digits"], "does not exist"),
        (["compare", "--models", "no_such_model", "--data", "digits"], "unknown model"),
    ],
    ids=[
        "unknown-model",
        "close-model-name",
        "close-model-arg",
        "negative-lr",
        "zero-epochs",
        "long-warmup",
        "no-data",
        "unknown-data",
        "missing-dir",
        "bad-model-arg",
        "missing-weights",
        "compare-unknown",
    ],
)
def test_bad_input_prints_one_line_and_exits_2(
    argv: list[str], message: str, capsys, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # failed before the run directory was made


def test_empty_class_folder_is_reported(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path)
    (root / "train" / "c").mkdir()
    (root / "val" / "c").mkdir()
    assert main(["train", "test_resnet", "--data", f"imagefolder:{root}", "--workers", "0"]) == 2
    assert "holds no image files" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path: Path) -> None:
    """60 images over 2 processes with --batch-size 40: the batch is checked against a process's 30."""
    data = f"cifar:{make_cifar(tmp_path / 'data', train=60, val=8, num_classes=2)}"
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
        "--batch-size",
        "40",
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
    warning = "--batch-size 40 is larger than each of 2 processes' share of the training set (30 of 60"
    assert result.stderr.count(warning) == 2  # once per process, and training went on
    assert json.loads((out / "history.json").read_text())[0]["train_loss"] > 0


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
