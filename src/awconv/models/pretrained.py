"""Loading a plain ResNet checkpoint into any SE/CBAM/AW variant, the way timm loads pretrained weights.

timm and torchvision name ResNet tensors alike (``conv1``, ``bn1``, ``layerS.B.convK``,
``layerS.B.downsample.0/1``, ``fc``), and the variants keep those names: AW layers hold the plain
convolution's ``weight``, SE and CBAM sit under new names. So a plain checkpoint fills every
tensor the plain model has; the attention modules keep their initialisation. With AW's
zero-initialised generators the loaded model computes exactly what the plain one did.

Fine-tuning elsewhere follows timm: a classifier of another shape (another class count) is left at
its initialisation, an input convolution of another channel count is adapted with timm's
``adapt_input_conv``; any other difference is an error naming the tensor. Three routes load:

- ``load_pretrained(model, path_or_state_dict)``, which ``awconv train --pretrained`` uses;
- ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path))``: the awconv
  models give timm ``checkpoint_filter_fn``, and timm itself drops a classifier when ``num_classes``
  differs from the configuration's and adapts the input convolution when ``in_chans`` does;
- ``timm.create_model(name, checkpoint_path=path)``.

For the two timm routes the ``aw_*`` models accept a state dict without attention tensors
(``allow_plain_checkpoints``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule
from timm.models import adapt_input_conv
from torch import Tensor, nn

from awconv.layers import AttentionGenerator
from awconv.models.weights_file import load_weights_file, read_state_dict, unwrap_state_dict

__all__ = [
    "ATTENTION_MODULES",
    "LoadResult",
    "allow_plain_checkpoints",
    "checkpoint_filter_fn",
    "load_pretrained",
    "load_weights_file",
    "network_tensors",
]

_logger = logging.getLogger(__name__)

# Modules a plain ResNet lacks; their tensors may be absent from a plain checkpoint.
ATTENTION_MODULES: tuple[type[nn.Module], ...] = (AttentionGenerator, SEModule, CbamModule)

# The network of an awconv training run's checkpoint: its LightningModule's ``model`` attribute.
_NETWORK_PREFIX = "model."


@dataclass(frozen=True)
class LoadResult:
    """What ``load_pretrained`` did.

    Attributes:
        matched: model keys filled from the checkpoint.
        new: model keys the checkpoint did not fill; they keep their initialisation.
        unused: checkpoint keys the model lacks, excluded ones, and those of ``reset``.
        reset: checkpoint keys of a classifier whose shape differs from the model's (another class
            count): the model's classifier is left at its initialisation.
        adapted: input-convolution weights adapted to the model's input channels (timm's
            ``adapt_input_conv``), among ``matched``.
    """

    matched: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]
    reset: tuple[str, ...] = ()
    adapted: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: the counts of matched, new and unused tensors, and what was reset or adapted."""
        text = (
            f"{len(self.matched)} matched, {len(self.new)} new (kept their init), {len(self.unused)} unused"
        )
        if self.reset:
            text += (
                f"; classifier left at its init, the checkpoint's has another shape: {', '.join(self.reset)}"
            )
        if self.adapted:
            text += f"; adapted to the model's input channels: {', '.join(self.adapted)}"
        return text


def load_pretrained(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, object],
    *,
    exclude: Sequence[str] = (),
    strict: bool = True,
) -> LoadResult:
    """Loads a plain ResNet checkpoint (timm or torchvision naming) into ``model`` in place.

    Args:
        model: a plain, SE, CBAM or AW ResNet of the checkpoint's depth.
        checkpoint: a ``.safetensors`` file, a ``.pth``/``.pt``/``.ckpt`` file (read with
            ``torch.load(weights_only=True)``) or a state dict; a state dict wrapped as
            ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped, a ``module.`` prefix is
            removed, and of an awconv training checkpoint (``checkpoints/*.ckpt``) the network's
            ``model.*`` tensors are taken.
        exclude: key prefixes to leave out, e.g. ``("layer4.",)``.
        strict: raise when the checkpoint has tensors the model lacks, or when the model has
            tensors outside its attention modules (AW generators, SE, CBAM), ``exclude`` and a
            reset classifier that the checkpoint lacks (a checkpoint of another depth).

    Returns:
        A ``LoadResult`` listing matched, new, unused, reset and adapted keys.

    Raises:
        ValueError: a tensor other than the classifier's and the input convolution's channel count
            has another shape (the message names the key and both shapes), or ``strict`` and the
            key sets disagree as described.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(checkpoint, (str, os.PathLike)):
        source = f"checkpoint {str(Path(checkpoint))!r}"
        state = read_state_dict(checkpoint)
    elif isinstance(checkpoint, Mapping):
        source = "the state dict"
        state = unwrap_state_dict(checkpoint, "checkpoint")
    else:
        raise TypeError(
            "checkpoint must be a file path or a state dict (names -> tensors), got "
            f"{type(checkpoint).__name__}"
        )
    target = model.state_dict()
    state = network_tensors(state, target)
    exclude = tuple(exclude)
    classifiers = _classifiers_to_reset(model, state, target)
    input_convs = {f"{name}.weight" for name in _cfg_names(model, "first_conv", "conv1")}
    loadable: dict[str, Tensor] = {}
    unused: list[str] = []
    reset: list[str] = []
    adapted: list[str] = []
    for key, tensor in state.items():
        if key.startswith(exclude) or key not in target or key.startswith(classifiers):
            unused.append(key)
            if key.startswith(classifiers) and not key.startswith(exclude):
                reset.append(key)
            continue
        if tensor.shape != target[key].shape:
            if key not in input_convs or not _channels_differ_only(tensor, target[key]):
                raise ValueError(
                    f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} but the model's has "
                    f"{tuple(target[key].shape)}; expected a checkpoint of the same architecture (only the "
                    "classifier and the input convolution's channels may differ)"
                )
            tensor = adapt_input_conv(target[key].shape[1], tensor, base_chans=tensor.shape[1])
            adapted.append(key)
        loadable[key] = tensor
    new = [key for key in target if key not in loadable]
    if strict:
        allowed = _attention_prefixes(model) + exclude + classifiers
        unexpected_new = [key for key in new if not key.startswith(allowed)]
        unexpected_unused = [key for key in unused if not key.startswith(exclude + classifiers)]
        if unexpected_new or unexpected_unused:
            raise ValueError(
                f"{source} does not fit {type(model).__name__}: model tensors missing from it "
                f"{_preview(unexpected_new)}, checkpoint tensors the model lacks "
                f"{_preview(unexpected_unused)}; expected a plain ResNet of the same depth "
                "(pass strict=False to load anyway)"
            )
    model.load_state_dict({**target, **loadable})  # the model's own tensors where none is loaded
    result = LoadResult(tuple(loadable), tuple(new), tuple(unused), tuple(reset), tuple(adapted))
    _logger.info("loaded %s into %s: %s", source, type(model).__name__, result.summary())
    return result


def network_tensors(state: Mapping[str, Tensor], model_keys: Sequence[str] | Mapping) -> dict[str, Tensor]:
    """The network's tensors of a checkpoint: of a LightningModule's state dict, the ``model.*`` ones.

    An awconv training checkpoint holds the ``LightningModule``'s state dict, in which the network
    is ``model``; its other entries (a loss's weights, metrics) are not the network's. A model
    that itself has keys starting with ``model.`` gets ``state`` as it is.

    Args:
        state: tensor name -> tensor.
        model_keys: the state-dict keys of the model to load into.
    """
    if any(key.startswith(_NETWORK_PREFIX) for key in model_keys) or not any(
        key.startswith(_NETWORK_PREFIX) for key in state
    ):
        return dict(state)
    return {
        key.removeprefix(_NETWORK_PREFIX): value
        for key, value in state.items()
        if key.startswith(_NETWORK_PREFIX)
    }


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """timm's ``pretrained_filter_fn`` for the awconv models: ``network_tensors`` of the checkpoint."""
    return network_tensors(state_dict, model.state_dict())


def allow_plain_checkpoints(model: nn.Module) -> None:
    """Lets ``model.load_state_dict`` take a state dict without one kind of attention module, strictly.

    When a state dict holds none of the tensors of the model's AW generators (or none of its SE, or
    CBAM, modules), those modules keep their initialisation, and ``strict=True`` does not count
    them as missing: a plain checkpoint then loads through timm's ``pretrained=True`` and
    ``checkpoint_path=`` routes, which load strictly. A state dict holding some but not all tensors
    of a kind is still refused.
    """
    model.register_load_state_dict_post_hook(_keep_absent_attention)


def _keep_absent_attention(model: nn.Module, incompatible) -> None:
    """Post-hook of ``allow_plain_checkpoints``: drops wholly missing attention kinds from missing keys."""
    missing = set(incompatible.missing_keys)
    for kind in ATTENTION_MODULES:
        keys = [
            f"{name}.{key}"
            for name, module in model.named_modules()
            if isinstance(module, kind)
            for key in module.state_dict()
        ]
        prefix = _prefix_of_all(keys, missing)
        if prefix is None:
            continue
        absent = {prefix + key for key in keys}
        incompatible.missing_keys[:] = [key for key in incompatible.missing_keys if key not in absent]
        _logger.info(
            "%s: the state dict holds no %s tensors; its %d %s tensors keep their initialisation",
            type(model).__name__,
            kind.__name__,
            len(keys),
            kind.__name__,
        )


def _prefix_of_all(keys: list[str], missing: set[str]) -> str | None:
    """The prefix under which every one of ``keys`` is missing (the model may be a submodule), or None."""
    if not keys:
        return None
    for candidate in missing:
        if candidate.endswith(keys[0]):
            prefix = candidate[: -len(keys[0])]
            if (not prefix or prefix.endswith(".")) and all(prefix + key in missing for key in keys):
                return prefix
    return None


def _cfg_names(model: nn.Module, field: str, default: str) -> tuple[str, ...]:
    """Module names from the model's timm configuration (``classifier``, ``first_conv``), else ``default``."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get(field) or default
    return (names,) if isinstance(names, str) else tuple(names)


def _classifiers_to_reset(
    model: nn.Module, state: Mapping[str, Tensor], target: Mapping[str, Tensor]
) -> tuple[str, ...]:
    """``name.`` prefixes of the classifiers whose tensors in ``state`` differ from the model's."""
    prefixes = []
    for name in _cfg_names(model, "classifier", "fc"):
        prefix = f"{name}."
        theirs = {key: value.shape for key, value in state.items() if key.startswith(prefix)}
        ours = {key: value.shape for key, value in target.items() if key.startswith(prefix)}
        if theirs and theirs != ours:
            prefixes.append(prefix)
    return tuple(prefixes)


def _channels_differ_only(theirs: Tensor, ours: Tensor) -> bool:
    """True for two conv weights (O, I, kh, kw) that differ in I only."""
    return (
        theirs.dim() == ours.dim() == 4
        and theirs.shape[0] == ours.shape[0]
        and theirs.shape[2:] == ours.shape[2:]
    )


def _attention_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Qualified-name prefixes (``name.``) of the model's attention modules."""
    return tuple(
        f"{name}." for name, module in model.named_modules() if isinstance(module, ATTENTION_MODULES)
    )


def _preview(keys: Sequence[str], limit: int = 5) -> str:
    """``[a, b, ...] (N)``: the first few keys and the count."""
    shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
    return f"[{shown}] ({len(keys)})"
