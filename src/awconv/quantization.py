"""Post-training int8 quantization of an exported ONNX model with ONNX Runtime (static, QDQ).

This is awconv's int8 route. In the ONNX graph that ``awconv export --format onnx`` writes, an AW
layer is standard operators (pooling, 1x1 convolutions, an im2col and a MatMul against the
per-sample weights), which ONNX Runtime quantizes like any other graph:

1. ``quant_pre_process``: shape inference and graph optimisation, ONNX Runtime's first step.
2. ``quantize_static`` in the QDQ format: int8 weights (per output channel by default) and int8
   activations whose ranges are calibrated (MinMax) on real images; the batch axis stays dynamic.

``torch.ao.quantization`` has no quantized AW-convolution: its eager route hands ``AWConv2d`` a
quantized tensor (refused, naming this route); ``prepare_fx``/``convert_fx`` and
``quantize_dynamic`` leave every AW layer in float (docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import Tensor

from awconv.data.classification import build_classification_data

__all__ = ["ImageCalibrationReader", "calibration_images", "check_quantized", "quantize_onnx"]


def calibration_images(spec: str, count: int, *, image_size: int | None = None, seed: int = 0) -> Tensor:
    """``count`` images (count, C, S, S) float32 from the training split of data ``spec``.

    A seeded random subset, with the training transforms (the images the model was trained on);
    the validation split stays unseen, for measuring the quantized model.

    Args:
        spec: a data specification of ``build_classification_data`` (``mnist5k``, ``cifar:DIR``...).
        count: how many images; at most the training split's size.
        image_size: side S, as the model was trained (default: the data set's).
        seed: picks the subset and the augmentation.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"calibration image count must be a positive int, got {count!r}")
    data = build_classification_data(spec, image_size=image_size)
    if count > len(data.train):
        raise ValueError(
            f"calibration image count must be at most the {len(data.train)} training images of "
            f"{spec!r}, got {count}"
        )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        indices = torch.randperm(len(data.train))[:count].tolist()
        return torch.stack([data.train[index][0] for index in indices])


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds images to ONNX Runtime's calibrator in batches.

    Args:
        images: (N, C, H, W) float32.
        input_name: the ONNX model's input.
        batch_size: images per calibration run.
    """

    def __init__(self, images: Tensor, input_name: str, batch_size: int = 32) -> None:
        self.batches = [batch.numpy() for batch in images.float().split(batch_size)]
        self.input_name = input_name
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return {self.input_name: self.batches[self.position - 1]}

    def __len__(self) -> int:
        return len(self.batches)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs its notes (e.g. one per BatchNormalization scale under
    per-channel quantization) as root-logger warnings; they are not the user's to act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _input_name_and_shape(model: onnx.ModelProto, path: Path) -> tuple[str, tuple[int | str, ...]]:
    if len(model.graph.input) != 1:
        count = len(model.graph.input)
        raise ValueError(f"model {str(path)!r} must have one input (an image batch), got {count}")
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else dim.dim_param for dim in dims)
    return graph_input.name, shape


def quantize_onnx(
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    images: Tensor,
    *,
    per_channel: bool = True,
    batch_size: int = 32,
) -> Path:
    """Writes an int8 (QDQ) copy of an exported float ONNX model, calibrated on ``images``.

    Args:
        model_path: the float ``.onnx`` file (one input (batch, C, H, W)), e.g. from
            ``awconv export --format onnx``.
        out_path: the int8 ``.onnx`` file, written atomically; it may not be ``model_path``.
        images: (N, C, H, W) float32 calibration images, preprocessed as the model's input (see
            ``calibration_images``); a few hundred are plenty.
        per_channel: one weight scale per output channel (else one per tensor).
        batch_size: calibration images per ONNX Runtime run.

    Returns:
        The written path.
    """
    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file {str(model_path)!r} not found (expected an exported .onnx file)")
    if out_path.resolve() == model_path.resolve():
        raise ValueError(f"out_path must differ from model_path, got {str(out_path)!r} for both")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and friends for a file that is not ONNX
        raise ValueError(f"model file {str(model_path)!r} is not an ONNX model ({error})") from error
    input_name, input_shape = _input_name_and_shape(model, model_path)
    is_batch = isinstance(images, Tensor) and images.is_floating_point() and images.dim() == 4
    if not is_batch or len(images) == 0:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty float tensor (N, C, H, W), got {got}")
    fixed = [(axis, size) for axis, size in enumerate(input_shape[1:], 1) if isinstance(size, int) and size]
    if any(images.shape[axis] != size for axis, size in fixed):
        raise ValueError(
            f"images must have the model's input shape (N, {', '.join(map(str, input_shape[1:]))}), "
            f"got {tuple(images.shape)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=f".{out_path.name}.", dir=out_path.parent) as work,
        _quiet_root_logger(),
    ):
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(model_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            ImageCalibrationReader(images, input_name, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        os.replace(quantized, out_path)
    return out_path


def check_quantized(
    path: str | os.PathLike, model: torch.nn.Module, images: Tensor, batch_size: int = 32
) -> tuple[float, float]:
    """Runs a quantized file in onnxruntime against the float PyTorch ``model`` on ``images``.

    Args:
        path: the int8 ``.onnx`` file.
        model: the float model it was exported from (eval mode).
        images: (N, C, H, W) float32.
        batch_size: images per run.

    Returns:
        ``(relative error ||int8 - float|| / ||float|| of the logits, fraction of images whose
        top-1 class agrees)``.
    """
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    expected, got = [], []
    for batch in images.float().split(batch_size):
        with torch.no_grad():
            expected.append(model.eval()(batch).double().numpy())
        got.append(session.run(None, {input_name: batch.numpy()})[0].astype(np.float64))
    float_logits, int8_logits = np.concatenate(expected), np.concatenate(got)
    error = float(np.linalg.norm(int8_logits - float_logits) / max(np.linalg.norm(float_logits), 1e-30))
    agreement = float(np.mean(int8_logits.argmax(1) == float_logits.argmax(1)))
    return error, agreement
