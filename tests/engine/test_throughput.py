"""``measure_throughput`` and ``measure_training_throughput``: what a measured step does, and its rate."""

from __future__ import annotations

import itertools
import time

import torch
from torch import nn

from awconv.engine.throughput import measure_throughput, measure_training_throughput

SLEEP_S = 0.02


class _SharedLog(dict):
    """What the forwards saw; a model's copies share it (``copy.deepcopy`` returns the log itself)."""

    def __init__(self) -> None:
        super().__init__(training=[], weights=[], backward=[])

    def __deepcopy__(self, memo: dict) -> _SharedLog:
        return self


class _Recorder(nn.Module):
    """A linear classifier that sleeps in every forward and records its mode, weights and backward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.linear = nn.Linear(16, 3)
        self.log = _SharedLog()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        time.sleep(SLEEP_S)
        self.log["training"].append(self.training)
        self.log["weights"].append(self.linear.weight.detach().clone())
        logits = self.linear(self.norm(images).flatten(1))
        if logits.requires_grad:
            logits.register_hook(lambda grad: self.log["backward"].append(grad.shape))
        return logits


def test_training_throughput_steps_a_copy_and_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = _Recorder().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rate = measure_training_throughput(model, (1, 4, 4), num_classes=3, batch_size=8, warmup=1, repeats=3)
    log = model.log
    assert log["training"] == [True] * 4 and log["backward"] == [torch.Size([8, 3])] * 4
    for earlier, later in itertools.pairwise(log["weights"]):  # each step moved the copy's weights
        assert not torch.equal(earlier, later)
    for key, value in model.state_dict().items():  # weights and batch-norm statistics untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert not model.training and 0 < rate <= 8 / SLEEP_S


def test_eval_throughput_runs_eval_mode_forwards_without_gradients_and_restores_the_mode() -> None:
    model = _Recorder()
    rate = measure_throughput(model, (1, 4, 4), batch_size=8, warmup=2, repeats=5)
    assert model.log["training"] == [False] * 7 and model.log["backward"] == []
    assert model.training and 0 < rate <= 8 / SLEEP_S
