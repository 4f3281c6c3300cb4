"""Measured inference speed for reports; ``awconv.profiling`` counts parameters and MACs."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["measure_throughput"]


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
