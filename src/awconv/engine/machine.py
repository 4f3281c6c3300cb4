"""The machine a run trains on, in words: accuracies as well as timings shift with it.

CPU kernels differ by vector unit (``torch.backends.cpu.get_cpu_capability()``: ``AVX2``,
``AVX512``...), so two machines give the same seed different trajectories; every epoch of a run
records where it ran (``EpochHistory``), and a run resumed elsewhere shows both machines.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["cpu_model", "describe_machine"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(device: torch.device) -> str:
    """One line naming what computes on ``device``.

    Args:
        device: the device the model runs on; for ``cuda`` the GPU's name comes first.

    Returns:
        e.g. ``"Intel(R) Xeon(R) Processor, AVX512, 2 CPUs"`` or
        ``"NVIDIA H200; AMD EPYC 9454, AVX512, 16 CPUs"``.
    """
    cpu = f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; {cpu}"
    return cpu
