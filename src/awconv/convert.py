"""Conversion of any model: swap chosen ``nn.Conv2d`` modules for ``AWConv2d``.

Because a fresh attention generator outputs zero attention, a converted model computes exactly
what it computed before, so pretrained networks keep their accuracy until fine-tuning starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn

from awconv.layers import AWConv2d

__all__ = ["convert", "default_include"]

_logger = logging.getLogger(__name__)

IncludeFn = Callable[[str, nn.Conv2d], bool]


def default_include(first_conv: str) -> IncludeFn:
    """The default policy: kernels larger than 1x1, except the network's first convolution."""

    def include(name: str, conv: nn.Conv2d) -> bool:
        return name != first_conv and max(conv.kernel_size) > 1

    return include


def convert(
    model: nn.Module, *, include: IncludeFn | None = None, **aw_kwargs
) -> tuple[nn.Module, list[str]]:
    """Replaces chosen ``nn.Conv2d`` modules of ``model`` by ``AWConv2d.from_conv`` in place.

    Args:
        model: any module. Existing ``AWConv2d`` layers and their generators are left alone.
        include: ``include(name, conv) -> bool`` picks the convolutions to convert; only plain
            ``nn.Conv2d`` modules are offered. Default: kernel larger than 1x1 and not the first
            convolution of the network (in registration order).
        **aw_kwargs: ``AWConv2d`` generator options (``reduction``, ``generator``, ``rank``,
            ``gate``, ``pool``, ``min_hidden``, ``impl``).

    Returns:
        ``(model, converted)``: the model (a new ``AWConv2d`` when ``model`` itself is a converted
        conv) and the qualified names of the converted modules, in order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if include is not None and not callable(include):
        raise TypeError(f"include must be a callable (name, module) -> bool, got {include!r}")
    candidates = _plain_convs(model)
    if include is None:
        include = default_include(candidates[0][0] if candidates else "")
    replacements: dict[int, AWConv2d] = {}
    converted: list[str] = []
    for name, conv in candidates:
        if not include(name, conv):
            continue
        if id(conv) not in replacements:
            replacements[id(conv)] = AWConv2d.from_conv(conv, **aw_kwargs)
        converted.append(name)
        if not name:
            return replacements[id(conv)], converted
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacements[id(conv)])
    _logger.info("converted %d of %d convolutions to AWConv2d", len(converted), len(candidates))
    return model, converted


def _plain_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every plain ``nn.Conv2d`` by qualified name, not descending into ``AWConv2d`` layers."""
    found: list[tuple[str, nn.Conv2d]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        if type(module) is nn.Conv2d:
            found.append((prefix, module))
            return
        if isinstance(module, AWConv2d):
            return
        # _modules, not named_children(): a module shared by two parents must be seen at both names.
        for child_name, child in module._modules.items():
            if child is not None:
                visit(child, f"{prefix}.{child_name}" if prefix else child_name)

    visit(model, "")
    return found
