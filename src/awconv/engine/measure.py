"""Model cost measured for reports: parameters, GMACs and inference images per second.

GMACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (multiply-accumulates =
FLOPs / 2) for one image, so every operator the model runs counts, including the per-sample
attention of AW layers.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_gmacs", "count_params", "measure_throughput"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gmacs(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """Multiply-accumulates (1e9) of one eval-mode forward pass on one (C, H, W) image."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return counter.get_total_flops() / 2e9


@torch.no_grad()
def measure_throughput(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_size: int = 64,
    warmup: int = 2,
    repeats: int = 5,
) -> float:
    """Eval-mode images per second on ``batch_size`` x (C, H, W) inputs: the median of ``repeats`` batches."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    images = torch.randn(batch_size, *input_shape, device=param.device, dtype=param.dtype)
    times = []
    for index in range(warmup + repeats):
        if param.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(images)
        if param.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return batch_size / statistics.median(times)
