"""Argument checks shared by the AW-convolution operators: tensors, dtypes and conv shapes."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_conv_shapes", "check_tensors"]


def check_tensors(**tensors: Tensor | None) -> None:
    """Checks that each named argument is a floating-point tensor (None is skipped)."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {tensor.dtype}")


def check_conv_shapes(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    """Checks input (N, C1, H, W), weight (C2, C1/groups, kh, kw), bias (C2,) and groups."""
    if x.dim() != 4:
        raise ValueError(f"input must have shape (N, C1, H, W), got {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must have shape (C2, C1/groups, kh, kw), got {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c2, c1_per_group = weight.shape[0], weight.shape[1]
    if x.shape[1] != c1_per_group * groups:
        raise ValueError(
            f"input has {x.shape[1]} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {c1_per_group * groups}"
        )
    if c2 % groups:
        raise ValueError(f"weight's out channels ({c2}) must be divisible by groups={groups}")
    if bias is not None and tuple(bias.shape) != (c2,):
        raise ValueError(f"bias must have shape ({c2},), got {tuple(bias.shape)}")
