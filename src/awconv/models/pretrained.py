"""Loading a plain ResNet checkpoint into any SE/CBAM/AW variant of the same depth.

timm and torchvision name ResNet tensors alike (``conv1``, ``bn1``, ``layerS.B.convK``,
``layerS.B.downsample.0/1``, ``fc``), and the variants keep those names: AW layers hold the plain
convolution's ``weight``, SE and CBAM sit under new names. So a plain checkpoint fills every
tensor the plain model has; the attention modules keep their initialisation. With AW's
zero-initialised generators the loaded model computes exactly what the plain one did.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule
from torch import Tensor, nn

from awconv.layers import AttentionGenerator

__all__ = ["ATTENTION_MODULES", "LoadResult", "load_pretrained", "load_weights_file", "read_state_dict"]

_logger = logging.getLogger(__name__)

# Modules a plain ResNet lacks; their tensors may be absent from a plain checkpoint.
ATTENTION_MODULES: tuple[type[nn.Module], ...] = (AttentionGenerator, SEModule, CbamModule)

# Keys under which training scripts wrap a state dict.
_WRAPPER_KEYS = ("state_dict", "model")


@dataclass(frozen=True)
class LoadResult:
    """What ``load_pretrained`` did.

    Attributes:
        matched: model keys filled from the checkpoint.
        new: model keys the checkpoint lacks; they keep their initialisation.
        unused: checkpoint keys the model lacks or that were excluded.
    """

    matched: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]

    def summary(self) -> str:
        """One line: the counts of matched, new and unused tensors."""
        return (
            f"{len(self.matched)} matched, {len(self.new)} new (kept their init), {len(self.unused)} unused"
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Reads a checkpoint's tensors by name.

    Args:
        path: a ``.safetensors`` file, or a ``torch.save`` file read with ``weights_only=True``;
            a dict wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped, a
            ``module.`` prefix (DataParallel/DDP) is removed, and so is a ``model.`` prefix that every
            name carries (the network of an ``awconv train`` checkpoint, ``checkpoints/*.ckpt``).

    Returns:
        Tensor name -> tensor, on the CPU.
    """
    path = Path(path)
    state = load_weights_file(path)
    while isinstance(state, Mapping) and not _is_tensor_dict(state):
        key = next((k for k in _WRAPPER_KEYS if k in state), None)
        if key is None:
            break
        state = state[key]
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise ValueError(
            f"checkpoint {str(path)!r} must hold a state dict of tensors (optionally under "
            f"{' or '.join(repr(k) for k in _WRAPPER_KEYS)}), got {type(state).__name__}"
        )
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if all(key.startswith("model.") for key in state):  # an awconv/Lightning run's checkpoint
        state = {key.removeprefix("model."): value for key, value in state.items()}
    return state


def load_weights_file(path: str | os.PathLike, map_location: Any = "cpu") -> object:
    """Reads a ``.safetensors`` file (onto the CPU), or a ``torch.save`` file with ``weights_only=True``.

    A pickle that refers to anything but tensors and plain containers is refused before any of its
    code runs. Every failure raises an exception whose one-line message names the file.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is empty, truncated, not a checkpoint, or holds code to run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path must be a checkpoint file, got {str(path)!r} (not found)")
    try:
        if path.suffix == ".safetensors":
            return load_file(path, device="cpu")
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line for line in str(error).splitlines() if "GLOBAL" in line]
        if not lines:  # not a pickle at all
            raise ValueError(
                f"checkpoint {str(path)!r} cannot be read (not a torch.save file of tensors); expected "
                "a .safetensors file or a torch.save file of tensors"
            ) from None
        raise ValueError(
            f"checkpoint {str(path)!r} was refused: it holds objects other than tensors and plain "
            f"containers, which could run code when unpickled ({lines[0].strip()}); expected a "
            ".safetensors file or a state dict saved with torch.save"
        ) from None
    except (SafetensorError, EOFError, RuntimeError, OSError) as error:
        detail = (str(error).splitlines() or [""])[0] or type(error).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({detail}); expected a .safetensors file or a "
            "torch.save file of tensors"
        ) from None


def _is_tensor_dict(state: Mapping) -> bool:
    return len(state) > 0 and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())


def _attention_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Qualified-name prefixes (``name.``) of the model's attention modules."""
    return tuple(
        f"{name}." for name, module in model.named_modules() if isinstance(module, ATTENTION_MODULES)
    )


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    exclude: Sequence[str] = (),
    strict: bool = True,
) -> LoadResult:
    """Loads a plain ResNet checkpoint (timm or torchvision naming) into ``model`` in place.

    Args:
        model: a plain, SE, CBAM or AW ResNet of the checkpoint's depth.
        path: ``.safetensors``, or a ``.pth``/``.pt`` file read with ``torch.load(weights_only=True)``.
        exclude: key prefixes to leave out, e.g. ``("fc.",)`` for a head of another class count.
        strict: raise when the checkpoint has tensors the model lacks, or when the model has
            tensors outside its attention modules (AW generators, SE, CBAM) and ``exclude`` that the
            checkpoint lacks (a checkpoint of another depth).

    Returns:
        A ``LoadResult`` listing matched, new and unused keys.

    Raises:
        ValueError: a tensor's shape differs (the message names the key and both shapes), or
            ``strict`` and the key sets disagree as described.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    checkpoint = read_state_dict(path)
    target = model.state_dict()
    exclude = tuple(exclude)
    loadable: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, tensor in checkpoint.items():
        if key.startswith(exclude) or key not in target:
            unused.append(key)
            continue
        if tensor.shape != target[key].shape:
            raise ValueError(
                f"checkpoint tensor {key!r} has shape {tuple(tensor.shape)} but the model's has "
                f"{tuple(target[key].shape)}"
            )
        loadable[key] = tensor
    new = [key for key in target if key not in loadable]
    if strict:
        allowed = _attention_prefixes(model) + exclude
        unexpected_new = [key for key in new if not key.startswith(allowed)]
        unexpected_unused = [key for key in unused if not key.startswith(exclude)]
        if unexpected_new or unexpected_unused:
            raise ValueError(
                f"checkpoint {str(path)!r} does not fit {type(model).__name__}: model tensors missing "
                f"from it {_preview(unexpected_new)}, checkpoint tensors the model lacks "
                f"{_preview(unexpected_unused)}; expected a plain ResNet of the same depth "
                "(pass strict=False to load anyway)"
            )
    model.load_state_dict(loadable, strict=False)
    result = LoadResult(tuple(loadable), tuple(new), tuple(unused))
    _logger.info("loaded %s into %s: %s", path, type(model).__name__, result.summary())
    return result


def _preview(keys: Sequence[str], limit: int = 5) -> str:
    """``[a, b, ...] (N)``: the first few keys and the count."""
    shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
    return f"[{shown}] ({len(keys)})"
