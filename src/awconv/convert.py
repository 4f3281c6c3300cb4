"""Conversion of any model: swap chosen convolutions for their AW-convolution counterparts.

``nn.Conv2d`` becomes ``AWConv2d`` and timm's ``Conv2dSame`` (TensorFlow "SAME" padding) becomes
``AWConv2dSame``. Because a fresh attention generator outputs zero attention, a converted model
computes exactly what it computed before, so pretrained networks keep their accuracy until
fine-tuning starts. Other subclasses of ``nn.Conv2d`` (weight-standardised convolutions and the
like) compute something else with their weights; they stay as they are, and a warning lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from timm.layers import Conv2dSame
from torch import nn

from awconv.layers import AWConv2d, AWConv2dSame

__all__ = ["CONVERTIBLE", "convert", "default_include"]

_logger = logging.getLogger(__name__)

IncludeFn = Callable[[str, nn.Conv2d], bool]

# The convolution types convert can replace exactly, and the AW layer each becomes.
CONVERTIBLE: dict[type[nn.Conv2d], type[AWConv2d]] = {nn.Conv2d: AWConv2d, Conv2dSame: AWConv2dSame}


def default_include(first_conv: str) -> IncludeFn:
    """The default policy: kernels larger than 1x1 (in either direction), except the first convolution."""

    def include(name: str, conv: nn.Conv2d) -> bool:
        return name != first_conv and max(conv.kernel_size) > 1

    return include


def convert(
    model: nn.Module, *, include: IncludeFn | None = None, **aw_kwargs
) -> tuple[nn.Module, list[str]]:
    """Replaces chosen convolutions of ``model`` by their AW counterparts, in place.

    Args:
        model: any module. Existing ``AWConv2d`` layers and their generators are left alone.
        include: ``include(name, conv) -> bool`` picks the convolutions to convert; every
            ``nn.Conv2d`` (subclasses too) is offered. Default: kernel larger than 1x1 and not the
            first convolution of the network (in registration order).
        **aw_kwargs: ``AWConv2d`` generator options (``reduction``, ``generator``, ``rank``,
            ``gate``, ``pool``, ``min_hidden``, ``impl``).

    Returns:
        ``(model, converted)``: the model (a new AW layer when ``model`` itself is a converted
        conv) and the qualified names of the converted modules, in order. A chosen convolution of a
        type other than ``nn.Conv2d`` and timm's ``Conv2dSame`` stays plain and is named in a
        warning.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if include is not None and not callable(include):
        raise TypeError(f"include must be a callable (name, module) -> bool, got {include!r}")
    candidates = _convolutions(model)
    if include is None:
        include = default_include(candidates[0][0] if candidates else "")
    replacements: dict[int, AWConv2d] = {}
    converted: list[str] = []
    skipped: list[str] = []
    for name, conv in candidates:
        if not include(name, conv):
            continue
        layer_type = CONVERTIBLE.get(type(conv))
        if layer_type is None:
            skipped.append(f"{name or 'the model'} ({type(conv).__name__})")
            continue
        if id(conv) not in replacements:
            replacements[id(conv)] = layer_type.from_conv(conv, **aw_kwargs)
        converted.append(name)
        if not name:
            return replacements[id(conv)], converted
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacements[id(conv)])
    if skipped:
        _logger.warning(
            "convert left %d chosen convolution(s) plain: %s; only nn.Conv2d and timm's Conv2dSame are "
            "converted, since another subclass of nn.Conv2d computes something else with its weights",
            len(skipped),
            ", ".join(skipped),
        )
    _logger.debug("converted %d of %d convolutions to AW-convolution", len(converted), len(candidates))
    return model, converted


def _convolutions(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` (subclasses too) by qualified name, not descending into ``AWConv2d`` layers."""
    found: list[tuple[str, nn.Conv2d]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        if isinstance(module, nn.Conv2d):
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
