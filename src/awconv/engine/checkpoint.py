"""Safe checkpoint files: atomic writes, ``weights_only`` loading and safetensors export.

- ``atomic_write(path, write)`` writes through a temporary file in the same folder, flushes and
  fsyncs it, then ``os.replace``s it over ``path``: a run killed mid-write leaves the previous
  file intact and no partial file behind.
- ``AtomicCheckpointIO`` is a Lightning ``CheckpointIO`` plugin that saves every checkpoint that
  way and loads with ``torch.load(..., weights_only=True)``, so a checkpoint can never run code.
- ``export_safetensors`` / ``load_weights`` move plain model weights in and out of files.

Nothing here is specific to classification: any ``LightningModule`` whose network is its
``model`` attribute (checkpoint keys ``model.*``) can use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import save

from awconv.models.pretrained import load_weights_file

__all__ = ["AtomicCheckpointIO", "atomic_write", "export_safetensors", "load_state_dict", "load_weights"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Writes a file all at once or not at all.

    Args:
        path: the destination; its folder is created if missing.
        write: ``write(file)`` writes the content to an open binary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic saves, ``weights_only=True`` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"storage_options is not supported by {type(self).__name__}, got {storage_options!r}"
            )
        atomic_write(path, lambda file: torch.save(checkpoint, file))

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint '{path}' does not exist")
        checkpoint = load_weights_file(path, map_location=map_location)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError(f"checkpoint '{path}' is not a Lightning checkpoint (no 'state_dict')")
        return checkpoint


def load_state_dict(path: str | os.PathLike, *, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """Reads model weights from a ``.safetensors`` file or a (Lightning) checkpoint.

    Args:
        path: ``.safetensors``, or a ``torch.save`` file holding a state dict or a Lightning
            checkpoint (``{"state_dict": ...}``); loaded with ``weights_only=True``.
        prefix: stripped from the keys of a Lightning checkpoint's ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    state = load_weights_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = {k.removeprefix(prefix): v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file '{path}' holds no state dict of tensors")
    return state


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Loads weights from ``path`` (see ``load_state_dict``) into ``model`` strictly; returns it.

    Raises:
        ValueError: the file's tensor names or shapes differ from the model's (the message names
            the file and the first few differences).
    """
    state = load_state_dict(path)
    target = model.state_dict()
    missing = [key for key in target if key not in state]
    unexpected = [key for key in state if key not in target]
    reshaped = [key for key in state if key in target and state[key].shape != target[key].shape]
    if missing or unexpected or reshaped:
        raise ValueError(
            f"weights file '{path}' does not fit {type(model).__name__}: missing {missing[:3]} "
            f"({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)}), other shape {reshaped[:3]} "
            f"({len(reshaped)}); expected weights of the same model and options"
        )
    model.load_state_dict(state)
    return model


def export_safetensors(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Writes weights to a ``.safetensors`` file atomically (copied to CPU, no shared storage)."""
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda file: file.write(save(tensors)))
