"""Exporting a trained model for deployment: ONNX with a dynamic batch, TorchScript, safetensors.

* ``onnx``: ``torch.onnx.export(..., dynamo=True)`` with the batch axis named ``"batch"``. AW
  layers export as standard ONNX operators (im2col and a MatMul over the symbolic batch, see
  docs/method.md); ``check_onnx`` runs the file in onnxruntime against PyTorch.
* ``torchscript``: ``torch.jit.script``; AW layers take their TorchScript path (a grouped
  convolution whose groups follow the batch), so the file needs neither Python nor awconv.
* ``safetensors``: the model's state dict.

No training code is needed: the weights come through ``awconv.models.pretrained.read_state_dict``
(safetensors, or ``torch.load(weights_only=True)``, an ``awconv train`` checkpoint included).
Every file is written to a temporary name beside its target and then renamed over it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from awconv.models.pretrained import read_state_dict

__all__ = ["EXPORT_FORMATS", "build_model", "check_onnx", "example_input", "export_model"]

EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")
BATCH_AXIS = "batch"


def build_model(name: str, weights: str | os.PathLike, **model_kwargs: Any) -> nn.Module:
    """A registered model with its trained weights, in eval mode.

    Args:
        name: a ``timm`` model name (``awconv`` families included).
        weights: a file ``read_state_dict`` reads; it must fill every tensor of the model.
        **model_kwargs: passed to ``timm.create_model`` (``num_classes``, ``generator``, ...), as
            the model was trained.

    Raises:
        ValueError: unknown model name, or weights that do not fit the model (the message names
            the first missing and unexpected keys).
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"model must be a registered model name, got {name!r}{hint}")
    model = timm.create_model(name, pretrained=False, **model_kwargs)
    state = read_state_dict(weights)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"weights {str(weights)!r} do not fit {name}: missing {_preview(missing)}, unexpected "
            f"{_preview(unexpected)}; expected the state dict of the model as trained (pass its "
            "--model-arg options)"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"weights tensor {key!r} has shape {tuple(tensor.shape)} but {name}'s has "
                f"{tuple(expected[key].shape)}; pass the --model-arg options the model was trained with"
            )
    model.load_state_dict(state)
    return model.eval()


def _preview(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
    return f"[{shown}] ({len(keys)})"


def example_input(model: nn.Module, batch_size: int = 2, image_size: int | None = None) -> Tensor:
    """A random input (batch_size, C, H, W) at the model's default size (``pretrained_cfg``).

    Args:
        model: a timm model; others need ``image_size`` and take 3 channels.
        batch_size: samples; exports are traced at 2 so that no size is taken for a constant 1.
        image_size: square side instead of the default.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = cfg.get("input_size", (3, image_size, image_size))
    channels = getattr(model, "in_chans", channels)
    if image_size is not None:
        height = width = image_size
    if height is None:
        raise ValueError("image_size must be given for a model without a pretrained_cfg input size")
    return torch.randn(batch_size, channels, height, width)


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block succeeds (removed if not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _export_onnx(model: nn.Module, example: Tensor, path: Path) -> None:
    batch = torch.export.Dim(BATCH_AXIS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on deprecated internals
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=["input"],
            output_names=["output"],
            verbose=False,
        )
    program.save(str(path))


def _export_torchscript(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of export
        torch.jit.save(torch.jit.script(model), str(path))


def _export_safetensors(model: nn.Module, path: Path) -> None:
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})


def export_model(model: nn.Module, path: str | os.PathLike, format: str, example: Tensor) -> Path:
    """Writes ``model`` (in eval mode) to ``path`` in ``format``, atomically.

    Args:
        model: the model; it is put in eval mode.
        path: the output file.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        example: an input (N, C, H, W) to trace with (ONNX; its batch axis stays dynamic).

    Returns:
        The written path.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    path = Path(path)
    model.eval()
    with _atomic_path(path) as temporary, torch.no_grad():
        if format == "onnx":
            _export_onnx(model, example, temporary)
        elif format == "torchscript":
            _export_torchscript(model, temporary)
        else:
            _export_safetensors(model, temporary)
    return path


def check_onnx(
    path: str | os.PathLike, model: nn.Module, example: Tensor, batch_sizes: Sequence[int] = (1, 3)
) -> dict[int, float]:
    """Runs an exported file in onnxruntime against ``model`` at several batch sizes.

    Args:
        path: the ``.onnx`` file.
        model: the PyTorch model it was exported from (eval mode).
        example: an input (N, C, H, W); each batch size gets fresh random samples of its shape.
        batch_sizes: the batch sizes to run.

    Returns:
        Batch size -> relative error ``||ort - torch|| / ||torch||`` of the outputs.
    """
    import onnxruntime  # the export extra

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    errors = {}
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, *example.shape[1:], dtype=example.dtype)
        with torch.no_grad():
            expected = model.eval()(x).double().numpy()
        got = session.run(None, {input_name: x.numpy()})[0].astype(np.float64)
        errors[batch_size] = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-30))
    return errors
