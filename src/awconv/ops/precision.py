"""The dtype an AW-convolution computes in: autocast's when it is on, else the promoted dtype."""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import Tensor

__all__ = ["autocast_off", "to_compute_dtype"]


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, or None when autocast is off."""
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def to_compute_dtype(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The tensors in the dtype to compute in, as ``custom_fwd`` casts them.

    Under autocast that is the autocast dtype; otherwise the promoted dtype of the tensors.
    Gradients flow back through the casts in the tensors' own dtypes. Tensors already in that
    dtype are returned as they are, so a traced graph holds no casts that do nothing.
    """
    dtype = _autocast_dtype(tensors[0].device.type)
    if dtype is None:
        dtype = functools.reduce(torch.promote_types, {t.dtype for t in tensors})
    return tuple(t if t.dtype == dtype else t.to(dtype) for t in tensors)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context in which autocast is off for ``device_type``: kernels compute in their inputs' dtype.

    Entering ``torch.autocast`` costs about as much as a small kernel, so it is entered only when
    autocast is on.
    """
    if _autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)
