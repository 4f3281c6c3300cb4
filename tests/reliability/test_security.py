"""Weights from strangers: no code runs when loading, every ``torch.load`` is ``weights_only``.

A crafted checkpoint whose unpickling would run ``os.system("touch MARKER")`` is refused by
``load_pretrained``, ``awconv train --resume``, ``awconv eval --weights`` and ``awconv detect eval``;
the marker file never appears.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path

import lightning.pytorch  # noqa: F401 (imported here, its log handler keeps the real stderr, not a test's)
import pytest
import timm
import torch
from tiny_data import make_cifar

import awconv
from awconv.cli import main
from awconv.data.shapes import make_shapes

SOURCE = Path(awconv.__file__).parent


class _RunsCode:
    """Unpickles to ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like a Lightning checkpoint and would create ``marker`` when unpickled."""
    payload = _RunsCode(f"touch {marker}")
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2, 2)}, "epoch": 0, "payload": payload}, path)
    return path


@pytest.fixture(autouse=True)
def _fresh_logging():
    """``main`` configures logging onto the stderr that pytest captures for one test; undo it after."""
    handlers = list(logging.root.handlers)
    yield
    logging.root.handlers[:] = handlers


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "the checkpoint's code ran"


def _torch_load_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for file in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("torch", "pickle")
            ):
                calls.append((f"{file.relative_to(SOURCE)}:{node.lineno}", node))
    return calls


def test_every_torch_load_is_weights_only() -> None:
    calls = _torch_load_calls()
    assert calls, "no torch.load call found: the scan is broken"
    unsafe = [
        where
        for where, call in calls
        if call.func.value.id == "pickle"
        or not any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        )
    ]
    assert not unsafe, f"torch.load without weights_only=True (or pickle.load) at {unsafe}"


def test_the_payload_would_run_without_weights_only(tmp_path: Path) -> None:
    """The control: the crafted file really runs code when loaded unsafely."""
    marker = tmp_path / "CONTROL"
    torch.load(_malicious_checkpoint(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()


def test_load_pretrained_refuses_code(tmp_path: Path, marker: Path) -> None:
    evil = _malicious_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(ValueError, match=r"evil\.pth' was refused.*posix\.system"):
        awconv.load_pretrained(timm.create_model("resnet20_cifar"), evil)


def _cli_error(argv: list[str], capsys) -> str:
    """Runs the command line; checks exit status 2 and one error line (Lightning's INFO lines aside)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("INFO")]
    assert len(errors) == 1 and errors[0].startswith("awconv ") and "Traceback" not in err, err
    return errors[0]


def test_eval_weights_refuses_code(tmp_path: Path, marker: Path, capsys) -> None:
    evil = _malicious_checkpoint(tmp_path / "best.ckpt", marker)
    data = f"cifar:{make_cifar(tmp_path / 'data', train=8, val=4, num_classes=2)}"
    argv = ["eval", "test_resnet", "--weights", str(evil), "--data", data, "--workers", "0"]
    assert "was refused" in _cli_error([*argv, "--accelerator", "cpu"], capsys)


def test_resume_refuses_code(tmp_path: Path, marker: Path, capsys) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=8, val=4, num_classes=2)}"
    run_dir = tmp_path / "run"
    _malicious_checkpoint(
        (run_dir / "checkpoints").mkdir(parents=True) or run_dir / "checkpoints/last.ckpt", marker
    )
    config = {"model": "test_resnet", "data": data, "run_dir": str(run_dir), "epochs": 2, "batch_size": 4}
    (run_dir / "config.json").write_text(json.dumps({**config, "image_size": 8, "workers": 0}))
    argv = ["train", "test_resnet", "--data", data, "--out", str(run_dir), "--resume", "--no-progress"]
    assert "was refused" in _cli_error([*argv, "--accelerator", "cpu"], capsys)


def test_detect_eval_refuses_code(tmp_path: Path, marker: Path, capsys) -> None:
    images_dir, annotations = make_shapes(tmp_path / "shapes", images=2, size=32, seed=0)["val"]
    evil = _malicious_checkpoint(tmp_path / "det.ckpt", marker)
    argv = ["detect", "eval", "--weights", str(evil), "--data", f"coco:{images_dir},{annotations}"]
    assert "was refused" in _cli_error([*argv, "--workers", "0", "--accelerator", "cpu"], capsys)
