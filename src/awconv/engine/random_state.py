"""``RandomState``: the process-wide random generators travel in every checkpoint.

A run resumed from ``last.ckpt`` continues Python's, NumPy's, torch's CPU and CUDA generators where
the uninterrupted run had them when it wrote that checkpoint, so dropout, drop-path and any other
random draw of the model go on as they would have. (The data order and augmentation do not come
from these generators at all: see ``awconv.engine.loaders``.) Under DDP the checkpoint holds rank
0's generators; Lightning seeds every rank alike, and ranks that run the same steps keep equal
states, so each rank gets its own state back.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

__all__ = ["RandomState"]


class RandomState(pl.Callback):
    """Saves the generators' states with the checkpoint (``state_dict``) and restores them on resume.

    The states are tensors, ints and lists only, so ``torch.load(weights_only=True)`` reads them.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": _to_lists(random.getstate()),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gauss": float(cached_gauss),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            (
                numpy_state["kind"],
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["cached_gauss"],
            )
        )
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _to_lists(value: Any) -> Any:
    """Tuples to lists, recursively (``random.getstate()`` as plain containers)."""
    return [_to_lists(item) for item in value] if isinstance(value, tuple) else value
