"""Every operator path, the layer and a model on every device present, against float64 references.

The checks live in tests/device_checks.py (``benchmarks/gpu.py`` runs the same on a GPU machine
without pytest); here they are parametrised over this machine's devices: ``cpu`` always, ``cuda``
when available (CI runs the CPU half). On the CPU the torch.compile checks are slow.
"""

from __future__ import annotations

import pytest
import torch
from device_checks import CheckSkipped, checks

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _cases() -> list:
    cases = [
        pytest.param(
            check.run, id=f"{device}-{check.name.replace(' ', '-')}", marks=[pytest.mark.slow] * check.slow
        )
        for device in DEVICES
        for check in checks(device)
    ]
    if "cuda" not in DEVICES:
        cases.append(pytest.param(None, id="cuda", marks=pytest.mark.skip(reason="no CUDA device")))
    return cases


@pytest.mark.parametrize("run", _cases())
def test_device(run) -> None:
    try:
        run()
    except CheckSkipped as skipped:
        pytest.skip(str(skipped))
