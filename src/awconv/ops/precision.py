"""The dtype an AW-convolution computes in: autocast's when it is on, else the promoted dtype."""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import Tensor

__all__ = ["compute_dtype"]


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, or None when autocast is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device argument
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:  # a device type without autocast, such as "meta"
        return None
    if not enabled:
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


@contextlib.contextmanager
def compute_dtype(*tensors: Tensor):
    """Casts tensors to the dtype to compute in and turns autocast off inside, as custom_fwd does.

    Under autocast that is the autocast dtype; otherwise the promoted dtype of the tensors.
    Gradients flow back through the casts in the tensors' own dtypes.
    """
    device_type = tensors[0].device.type
    dtype = _autocast_dtype(device_type)
    if dtype is None:
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        autocast_off = contextlib.nullcontext()
    else:
        autocast_off = torch.autocast(device_type, enabled=False)
    with autocast_off:
        yield tuple(t.to(dtype) for t in tensors)
