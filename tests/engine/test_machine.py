"""``describe_machine``: the CPU's model and vector unit, and the GPU first on a CUDA device."""

from __future__ import annotations

import os
import platform

import pytest
import torch

from awconv.engine.machine import cpu_model, describe_machine


def test_cpu_description_names_model_vector_unit_and_cores() -> None:
    names = []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    model = names[0] if names else platform.processor()
    assert model and cpu_model() == model
    capability = torch.backends.cpu.get_cpu_capability()
    assert describe_machine(torch.device("cpu")) == f"{model}, {capability}, {os.cpu_count()} CPUs"


def test_cuda_description_puts_the_gpu_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU of {device}")
    description = describe_machine(torch.device("cuda", 1))
    assert description == f"GPU of cuda:1; {describe_machine(torch.device('cpu'))}"
