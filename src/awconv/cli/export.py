"""``awconv export``: a trained model as ONNX (dynamic batch, float or int8), TorchScript or safetensors."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from awconv.engine.options import parse_key_values

__all__ = ["EXPORT_FORMATS", "add_parser", "run"]

# awconv.export.EXPORT_FORMATS, written out so that --help imports no torch (tests/cli checks both agree).
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")

QUANTIZE_TYPES = ("int8",)
DATA_SPECS = "imagefolder:DIR, cifar:DIR, mnist5k or digits"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX (float or int8), TorchScript or safetensors",
        description=(
            "Builds a registered model, loads its trained weights (safetensors, a torch.save state "
            "dict, or an awconv train checkpoint) and writes it for deployment. ONNX keeps the "
            "batch axis dynamic (named 'batch') and is checked in onnxruntime against PyTorch at "
            "batch 1 and 3; with --quantize int8 the file is ONNX Runtime's static int8 "
            "quantization (QDQ, per-channel weights) calibrated on --calibration-images images of "
            "--calibration-data. TorchScript needs neither Python nor awconv to run; safetensors "
            "holds the state dict."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="registered model name, e.g. aw_resnet20_cifar")
    parser.add_argument("--weights", required=True, metavar="W", help="the trained weights file")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    parser.add_argument("--out", required=True, metavar="F", help="output file")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument as trained, repeatable, e.g. --model-arg num_classes=10",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="square input side (default: the model's, 224 or 32)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime checks of an ONNX file")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_TYPES,
        default=None,
        help="with --format onnx: write an int8 model (ONNX Runtime static quantization, QDQ)",
    )
    parser.add_argument(
        "--calibration-data",
        default=None,
        metavar="SPEC",
        help=f"with --quantize: the training data to calibrate on ({DATA_SPECS}), as trained",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=256,
        metavar="N",
        help="with --quantize: images drawn from the training split (default 256)",
    )
    parser.set_defaults(func=run)


def _check_quantize_arguments(args: argparse.Namespace) -> None:
    if args.quantize is None:
        if args.calibration_data is not None:
            raise ValueError(
                f"--calibration-data is only used with --quantize int8, got {args.calibration_data!r}"
            )
        return
    if args.format != "onnx":
        raise ValueError(f"--quantize {args.quantize} needs --format onnx, got --format {args.format}")
    if args.calibration_data is None:
        raise ValueError(f"--quantize {args.quantize} needs --calibration-data SPEC ({DATA_SPECS})")
    if args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be a positive int, got {args.calibration_images}")


def run(args: argparse.Namespace) -> int:
    """Exports the model; returns the exit status."""
    from awconv.export import build_model, check_onnx, example_input, export_model

    for name in ("onnxscript", "onnx_ir"):  # the exporter's optimizer notes, about one per node
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be a positive int, got {args.image_size}")
    _check_quantize_arguments(args)
    model_kwargs = parse_key_values(args.model_arg, "--model-arg")
    model = build_model(args.model, args.weights, **model_kwargs)
    example = example_input(model, image_size=args.image_size)
    if args.quantize is None:
        path = export_model(model, args.out, args.format, example)
        print(f"wrote {path} ({args.format}, input (batch, {', '.join(map(str, example.shape[1:]))}))")
        if args.format == "onnx" and not args.no_check:
            _check_float(check_onnx(path, model, example))
        return 0

    from awconv.quantization import calibration_images, check_quantized, quantize_onnx

    images = calibration_images(args.calibration_data, args.calibration_images, image_size=example.shape[-1])
    if images.shape[1:] != example.shape[1:]:
        raise ValueError(
            f"--calibration-data {args.calibration_data} gives images {tuple(images.shape[1:])} but the "
            f"model takes {tuple(example.shape[1:])}; pass the --image-size and --model-arg in_chans=... "
            "it was trained with"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        float_path = export_model(model, Path(work) / "float.onnx", "onnx", example)
        if not args.no_check:
            _check_float(check_onnx(float_path, model, example))
        path = quantize_onnx(float_path, out, images)
    print(f"wrote {path} (onnx int8, input (batch, {', '.join(map(str, example.shape[1:]))}))")
    if not args.no_check:
        error, agreement = check_quantized(path, model, images)
        print(
            f"int8 against float PyTorch on the {len(images)} calibration images: relative error of "
            f"the logits {error:.1e}, top-1 agreement {agreement:.1%}"
        )
    return 0


def _check_float(errors: dict[int, float]) -> None:
    summary = ", ".join(f"batch {batch}: {error:.1e}" for batch, error in errors.items())
    print(f"onnxruntime against PyTorch, relative error: {summary}")
    worst = max(errors.values())
    if worst > 1e-4:
        raise RuntimeError(f"onnxruntime's outputs differ from PyTorch's (relative error {worst:.1e})")
