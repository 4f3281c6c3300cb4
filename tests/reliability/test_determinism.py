"""``--deterministic``: deterministic algorithms on, and two runs with one seed give equal weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tiny_data import make_cifar

from awconv.engine.checkpoint import load_state_dict
from awconv.engine.classification import TrainConfig, train_classifier


@pytest.fixture(autouse=True)
def _restore_global_state():
    """One thread; Lightning's ``deterministic=True`` switches deterministic algorithms on process-wide."""
    threads, handlers = torch.get_num_threads(), list(logging.root.handlers)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    logging.root.handlers[:] = handlers


class _RecordDeterminism(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.enabled = torch.are_deterministic_algorithms_enabled()


def _run(data: str, out: Path, model: str) -> tuple[dict[str, torch.Tensor], bool]:
    torch.use_deterministic_algorithms(False)
    record = _RecordDeterminism()
    config = TrainConfig(
        model,
        data,
        str(out),
        model_kwargs={"drop_rate": 0.2},
        epochs=2,
        batch_size=4,
        image_size=8,
        workers=0,
        accelerator="cpu",
        seed=7,
        deterministic=True,
        progress_bar=False,
    )
    train_classifier(config, callbacks=[record])
    return load_state_dict(out / "checkpoints" / "last.ckpt"), record.enabled


@pytest.mark.parametrize("model", ["test_resnet", "aw_resnet20_cifar"])
def test_same_seed_same_weights(tmp_path: Path, model: str) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=16, val=4, num_classes=2)}"
    first, enabled = _run(data, tmp_path / "a", model)
    second, _ = _run(data, tmp_path / "b", model)
    assert enabled, "--deterministic did not switch deterministic algorithms on"
    assert json.loads((tmp_path / "a" / "config.json").read_text())["deterministic"] is True
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_cli_flag_reaches_the_config() -> None:
    from awconv.cli import build_parser
    from awconv.cli.train import recipe_from_args

    args = build_parser().parse_args(["train", "m", "--data", "digits", "--deterministic"])
    assert recipe_from_args(args, model="m", run_dir="r").deterministic
    detect = build_parser().parse_args(
        ["detect", "train", "--data", "x", "--val-data", "y", "--deterministic"]
    )
    assert detect.deterministic


class _RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch[0].clone())


def test_one_seed_gives_every_model_the_same_batches(tmp_path: Path) -> None:
    """Data order and augmentation depend on the seed alone, not on the model's initialisation
    (AW draws more random numbers than plain), so runs paired by seed see the same images."""
    data = f"cifar:{make_cifar(tmp_path / 'data', train=16, val=4, num_classes=2)}"
    seen = []
    for model in ("test_resnet", "aw_resnet20_cifar"):
        record = _RecordBatches()
        config = TrainConfig(
            model, data, str(tmp_path / model), epochs=2, batch_size=4, image_size=8, workers=0,
            accelerator="cpu", seed=3, progress_bar=False,
        )  # fmt: skip
        train_classifier(config, callbacks=[record])
        seen.append(record.batches)
    assert len(seen[0]) == len(seen[1]) == 8
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True))
