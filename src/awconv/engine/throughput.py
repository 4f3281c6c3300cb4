"""Measured inference and training speed for reports; ``awconv.profiling`` counts parameters and MACs."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["measure_throughput", "measure_training_throughput"]


def _median_seconds(step: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``step()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    times = []
    for index in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    seconds = _median_seconds(lambda: model(images), param.device, warmup, repeats)
    model.train(was_training)
    return batch_size / seconds


def measure_training_throughput(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    num_classes: int,
    batch_size: int = 64,
    warmup: int = 1,
    repeats: int = 3,
) -> float:
    """Training images per second: the median of ``repeats`` steps on a copy of ``model``.

    A step is what a training batch costs without loading: train-mode forward of ``batch_size`` x
    (C, H, W) random images, cross-entropy against random labels of ``num_classes`` classes
    (the model returns (N, num_classes) logits), backward and an SGD step with momentum. The copy
    keeps ``model``'s weights and batch-norm statistics as they are.
    """
    network = copy.deepcopy(model).train()
    param = next(network.parameters())
    images = torch.randn(batch_size, *input_shape, device=param.device, dtype=param.dtype)
    labels = torch.randint(num_classes, (batch_size,), device=param.device)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(images), labels).backward()
        optimizer.step()

    return batch_size / _median_seconds(step, param.device, warmup, repeats)
