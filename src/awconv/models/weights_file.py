"""Reading weight files safely: ``.safetensors``, or ``torch.save`` files read with ``weights_only=True``.

``read_state_dict`` also unwraps the containers training scripts save: ``{"state_dict": ...}``
(Lightning, awconv's own runs), ``{"model": ...}`` (timm, DeiT-style), and the ``module.`` prefix
of DataParallel/DDP.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

__all__ = ["load_weights_file", "read_state_dict", "unwrap_state_dict"]

# Keys under which training scripts wrap a state dict.
_WRAPPER_KEYS = ("state_dict", "model")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Reads a checkpoint's tensors by name (see ``unwrap_state_dict``), on the CPU."""
    return unwrap_state_dict(load_weights_file(path), f"checkpoint {str(Path(path))!r}")


def unwrap_state_dict(checkpoint: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside a checkpoint.

    Args:
        checkpoint: a state dict, or one wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``
            (nested wrappers too); a ``module.`` prefix (DataParallel/DDP) is removed from the names.
        source: how error messages name the checkpoint.

    Returns:
        Tensor name -> tensor.

    Raises:
        ValueError: no non-empty mapping of names to tensors was found.
    """
    state = checkpoint
    while isinstance(state, Mapping) and not _is_tensor_dict(state):
        key = next((k for k in _WRAPPER_KEYS if k in state), None)
        if key is None:
            break
        state = state[key]
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise ValueError(
            f"{source} must hold a state dict of tensors (optionally under "
            f"{' or '.join(repr(k) for k in _WRAPPER_KEYS)}), got {type(state).__name__}"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


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
