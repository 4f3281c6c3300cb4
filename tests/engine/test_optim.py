"""Parameter groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from awconv.engine.optim import build_optimizer, build_scheduler, param_groups, warmup_multistep


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias


@pytest.mark.parametrize(
    ("name", "kind"),
    [("sgd", "SGD"), ("adamw", "AdamW"), ("lamb", "Lamb"), ("lars", "Lars")],
)
def test_optimizers(name: str, kind: str) -> None:
    optimizer = build_optimizer(nn.Linear(2, 2), name, lr=0.5, weight_decay=0.1, betas=(0.8, 0.9))
    assert type(optimizer).__name__ == kind
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5]
    # The weight decays, the bias not; in this order, which checkpoints of earlier runs hold.
    assert [(g["params"][0].ndim, g["weight_decay"]) for g in optimizer.param_groups] == [(2, 0.1), (1, 0.0)]
    if name in ("adamw", "lamb"):
        assert optimizer.defaults["betas"] == (0.8, 0.9)
    if name == "sgd":
        assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9


def test_layer_decay_gives_each_block_its_lr() -> None:
    """resnet20_cifar: stem, 9 blocks, head; layer k of 11 gets lr * 0.5 ** (10 - k)."""
    import timm

    import awconv  # noqa: F401  (registers the model)

    model = timm.create_model("resnet20_cifar", num_classes=3)
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    depths = set()
    for name, param in model.named_parameters():
        if name.startswith(("conv1.", "bn1.")):
            depth = 0
        elif name.startswith("layer"):
            stage, block = int(name[5]), int(name.split(".")[1])
            depth = 1 + 3 * (stage - 1) + block
        else:
            assert name.startswith("fc."), name
            depth = 10
        depths.add(depth)
        assert lr_of[id(param)] == pytest.approx(0.1 * 0.5 ** (10 - depth)), name
    assert depths == set(range(11))
    assert {g["weight_decay"] for g in optimizer.param_groups} == {1e-4, 0.0}
    assert optimizer.defaults["lr"] == 0.1
    with pytest.raises(ValueError) as raised:
        build_optimizer(nn.Sequential(nn.Linear(2, 2)), "sgd", lr=0.1, weight_decay=0, layer_decay=0.5)
    assert str(raised.value) == (
        "--layer-decay 0.5: Sequential has no layers to decay (no timm group_matcher), every parameter "
        "would get the same lr; use a timm or awconv model"
    )


def _lrs(name: str, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, name, **kwargs)
    lrs = []
    for _ in range(kwargs["total_steps"]):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_cosine() -> None:
    lrs = _lrs("cosine", total_steps=12, warmup_steps=4)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] < 0.05


def test_warmup_lr_and_min_lr() -> None:
    """Warm-up from 0.1 of the peak, cosine down to 0.2 of it."""
    lrs = _lrs("cosine", total_steps=6, warmup_steps=2, warmup_factor=0.1, min_factor=0.2)
    cosine = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0, 0.25, 0.5, 0.75)]
    assert lrs == pytest.approx([0.55, 1.0, *cosine])
    step = _lrs("step", total_steps=6, step_every=2, gamma=0.1, min_factor=0.05)
    assert step == pytest.approx([1, 1, 0.1, 0.1, 0.05, 0.05])


def test_step_schedule() -> None:
    assert _lrs("step", total_steps=6, step_every=2, gamma=0.5) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_bad_schedule_arguments() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        build_scheduler(optimizer, "linear", total_steps=3)
    with pytest.raises(ValueError, match="warmup_steps"):
        build_scheduler(optimizer, "cosine", total_steps=3, warmup_steps=5)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(nn.Linear(1, 1), "rmsprop", lr=1, weight_decay=0)


def test_warmup_multistep_warms_up_linearly_and_decays_at_each_milestone_step() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_multistep(optimizer, warmup_steps=4, warmup_factor=0.2, milestones=(9, 6), gamma=0.5)
    lrs = []
    for _ in range(11):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # Step s < 4 warms up to 0.2 + 0.8 s / 4; step 6 is the first at half the rate, step 9 at a quarter.
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_optimizer_options_reach_torch() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    sgd = build_optimizer(model, "sgd", lr=0.5, weight_decay=0.1)
    assert [(g["weight_decay"], g["momentum"], g["nesterov"]) for g in sgd.param_groups] == [
        (0.1, 0.9, True),
        (0.0, 0.9, True),
    ]
    plain = build_optimizer(model, "sgd", lr=0.5, weight_decay=0.1, momentum=0.0)
    assert [(g["momentum"], g["nesterov"]) for g in plain.param_groups] == [(0.0, False), (0.0, False)]
    adamw = build_optimizer(model, "adamw", lr=0.5, weight_decay=0.1)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]


def test_cosine_values_and_zero_after_the_end() -> None:
    """Each step's rate is the closed form; from ``total_steps`` on the factor stays 0 (no rise)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    factor = build_scheduler(optimizer, "cosine", total_steps=10, warmup_steps=2).lr_lambdas[0]
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(8)]
    assert [factor(step) for step in range(10)] == pytest.approx(expected)
    assert [factor(step) for step in (10, 13, 20)] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    no_warmup = build_scheduler(optimizer, "cosine", total_steps=4).lr_lambdas[0]
    assert [no_warmup(step) for step in range(5)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]
    )
    # one step after a warm-up that fills all but one step: the cosine has reached 0
    short = build_scheduler(optimizer, "cosine", total_steps=3, warmup_steps=2).lr_lambdas[0]
    assert [short(step) for step in range(4)] == pytest.approx([0.5, 1.0, 1.0, 0.0])


def test_step_schedule_defaults_and_edge_lengths() -> None:
    assert _lrs("step", total_steps=3) == pytest.approx([1.0, 0.1, 0.01])  # every step, gamma 0.1
    assert _lrs("cosine", total_steps=1) == [1.0]
    assert _lrs("cosine", total_steps=3, warmup_steps=3) == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_lars_takes_the_momentum_and_every_optimizer_keeps_lr_as_its_default() -> None:
    lars = build_optimizer(nn.Linear(2, 2), "lars", lr=0.5, weight_decay=0.1, momentum=0.5)
    assert [g["momentum"] for g in lars.param_groups] == [0.5, 0.5]
    for name in ("sgd", "adamw", "lars"):  # what a group added later (add_param_group) starts from
        assert build_optimizer(nn.Linear(2, 2), name, lr=0.5, weight_decay=0.1).defaults["lr"] == 0.5
