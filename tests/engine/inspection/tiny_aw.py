"""A tiny model with three kinds of AW layer and class-dependent batches, for the inspection tests."""

from __future__ import annotations

import torch
from reference import randomize_generator
from torch import nn

from awconv.layers import AWConv2d


class TinyAW(nn.Module):
    """Three AW layers: tanh/kernel pool, sigmoid/global pool/groups, lowrank/no gate/3x1 kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.aw1 = AWConv2d(3, 4, 3, padding=1, min_hidden=4)
        self.aw2 = AWConv2d(4, 6, 3, padding=1, groups=2, gate="sigmoid", pool="global", min_hidden=4)
        self.aw3 = AWConv2d(
            6, 5, (3, 1), padding=(1, 0), generator="lowrank", rank=2, gate="none", min_hidden=4
        )
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.aw3(torch.relu(self.aw2(torch.relu(self.aw1(x)))))
        return self.head(x.mean((2, 3)))


def tiny_model_and_batches(seed: int = 0) -> tuple[TinyAW, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The model with random generators and 3 batches: images (5, 3, 6, 6), labels (5,) in 0..2."""
    torch.manual_seed(seed)
    model = TinyAW()
    for layer, scale in ((model.aw1, 2.0), (model.aw2, 1.0), (model.aw3, 0.7)):
        randomize_generator(layer, scale)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2, 1, 0, 2])
    # A class-dependent brightness pattern, so that the attention depends on the class.
    images = torch.randn(15, 3, 6, 6) + labels.view(-1, 1, 1, 1) * torch.tensor([1.0, -0.5, 0.3]).view(
        1, 3, 1, 1
    )
    return model, [(images[i : i + 5], labels[i : i + 5]) for i in range(0, 15, 5)]
