"""The detection recipe: named schedules, the lr curve at its milestones, weight decay by parameter kind."""

import pytest
import torch
from torch import nn

from awconv.engine.choices import DETECTION_SCHEDULES
from awconv.engine.detection.recipe import (
    SCHEDULES,
    detection_lr_schedule,
    detection_param_groups,
    resolve_schedule,
)


def test_named_schedules_are_the_references_and_can_be_overridden() -> None:
    assert {name: tuple(s) for name, s in SCHEDULES.items()} == {
        "1x": (12, (8, 11)),
        "2x": (24, (16, 22)),
        "3x": (36, (27, 33)),
        "torchvision": (26, (16, 22)),
    }
    assert tuple(SCHEDULES) == DETECTION_SCHEDULES  # the command line's choices, offered without torch
    assert resolve_schedule("2x", epochs=5) == (5, (16, 22))
    assert resolve_schedule("1x", milestones=[4, 2]) == (12, (2, 4))
    with pytest.raises(
        ValueError, match=r"schedule must be one of \['1x', '2x', '3x', 'torchvision'\], got '4x'"
    ):
        resolve_schedule("4x")
    with pytest.raises(ValueError, match="milestones must be epochs >= 1"):
        resolve_schedule("1x", milestones=[0])


def test_the_rate_warms_up_then_drops_by_gamma_exactly_at_each_milestone_epoch() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02)
    schedule = detection_lr_schedule(
        optimizer, steps_per_epoch=10, total_steps=120, warmup_iters=4, warmup_factor=0.001,
        milestones=(8, 11), gamma=0.1,
    )  # fmt: skip
    rates = []
    for _ in range(120):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.02 * (0.001 + 0.999 * step / 4) for step in range(4)]
    expected += [0.02] * 76 + [0.002] * 30 + [0.0002] * 10  # iteration 80 is the first of epoch 9
    torch.testing.assert_close(
        torch.tensor(rates, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    )


def test_weight_decay_by_parameter_kind() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Linear(4, 2))
    model[3].weight.requires_grad_(False)
    groups = detection_param_groups(model, weight_decay=1e-4, norm_weight_decay=0.5)
    by_decay = {group["weight_decay"]: {id(p) for p in group["params"]} for group in groups}
    assert by_decay == {
        1e-4: {id(model[0].weight)},  # frozen parameters are left out
        0.5: {id(p) for p in (*model[1].parameters(), *model[2].parameters())},
        0.0: {id(model[0].bias), id(model[3].bias)},
    }
    assert [g["weight_decay"] for g in detection_param_groups(nn.Linear(2, 2), 1e-4, 0.0)] == [1e-4, 0.0]
