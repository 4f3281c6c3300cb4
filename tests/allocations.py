"""Counting the large tensors torch operators create: how tests see that a kernel reuses buffers."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LargeTensors(TorchDispatchMode):
    """Counts the new tensors of at least ``numel`` elements that torch operators return.

    A result that aliases an argument (a view, an in-place or ``out=`` operation: the schema says
    so; ``_unsafe_view``: it lies in the argument's memory) is not new and not counted; nor are a
    kernel's writes through pointers (Triton's, oneDNN's), which torch never sees. Use as
    ``with LargeTensors(numel) as large: ...``, then read ``large.count``.
    """

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        given = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        if any(result.alias_info is not None for result in func._schema.returns):
            return out
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and _storage(tensor) not in given:
                self.count += tensor.numel() >= self.numel
        return out


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()
