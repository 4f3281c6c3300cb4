"""Run directories that move and resume: portable config paths, the resume check, relocated
checkpoint state and the random-generator states carried in checkpoints."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from awconv.engine.random_state import RandomState
from awconv.engine.run_config import check_resumable, portable_path
from awconv.engine.trainer import RunCheckpoint


def test_portable_paths_are_relative_inside_the_run_and_absolute_outside(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert portable_path("run/checkpoints/best.ckpt", "run") == "checkpoints/best.ckpt"
    assert portable_path("data/../weights.pt", "run") == str(tmp_path / "weights.pt")
    assert portable_path(None, "run") is None


def test_resume_with_another_value_names_the_option_and_both_values(tmp_path: Path) -> None:
    saved_file = {"lr": 0.05, "epochs": 2, "model_kwargs": {}, "seed": 0}
    (tmp_path / "config.json").write_text(json.dumps(saved_file))
    saved = {"lr": 0.05, "epochs": 5, "model_kwargs": {}, "new_field": 1}
    check_resumable(tmp_path, saved, may_change=["epochs"])  # epochs may change; unknown fields pass
    with pytest.raises(ValueError) as raised:
        check_resumable(
            tmp_path,
            {**saved, "lr": 0.5, "model_kwargs": {"drop_rate": 0.1}},
            may_change=["epochs"],
            options={"model_kwargs": "--model-arg"},
        )
    message = str(raised.value)
    assert "--lr was 0.05, now 0.5" in message and "--model-arg was {}, now {'drop_rate': 0.1}" in message
    assert "only --epochs may change" in message and len(message.splitlines()) == 1
    check_resumable(tmp_path / "fresh", {"lr": 1.0}, may_change=())  # no config.json: nothing to compare


def test_checkpoint_state_follows_a_moved_run_directory(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    callback = RunCheckpoint(dirpath=new, filename="best", monitor="val_top1", mode="max")
    old_best = str(old / "best.ckpt")
    state = {
        "monitor": "val_top1",
        "best_model_score": torch.tensor(0.75),
        "best_model_path": old_best,
        "current_score": torch.tensor(0.5),
        "dirpath": str(old),
        "best_k_models": {old_best: torch.tensor(0.75)},
        "kth_best_model_path": old_best,
        "kth_value": torch.tensor(0.75),
        "last_model_path": "",
    }
    callback.load_state_dict(state)
    assert callback.best_model_path == str(new / "best.ckpt")
    assert callback.best_model_score == 0.75  # Lightning's own class forgets it when the folder moved
    assert list(callback.best_k_models) == [str(new / "best.ckpt")]
    assert callback.state_key.startswith("ModelCheckpoint{")


def test_random_states_survive_a_weights_only_checkpoint() -> None:
    callback = RandomState()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    buffer = io.BytesIO()
    torch.save(callback.state_dict(), buffer)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    buffer.seek(0)
    callback.load_state_dict(torch.load(buffer, weights_only=True))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
