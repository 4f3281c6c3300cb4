"""``awconv export``: a trained model as ONNX (dynamic batch), TorchScript or safetensors."""

from __future__ import annotations

import argparse

from awconv.engine.options import parse_key_values
from awconv.export import EXPORT_FORMATS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX, TorchScript or safetensors",
        description=(
            "Builds a registered model, loads its trained weights (safetensors, a torch.save state "
            "dict, or an awconv train checkpoint) and writes it for deployment. ONNX keeps the "
            "batch axis dynamic (named 'batch') and is checked in onnxruntime against PyTorch at "
            "batch 1 and 3; TorchScript needs neither Python nor awconv to run; safetensors holds "
            "the state dict."
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
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check of an ONNX file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exports the model; returns the exit status."""
    from awconv.export import build_model, check_onnx, example_input, export_model

    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be a positive int, got {args.image_size}")
    model_kwargs = parse_key_values(args.model_arg, "--model-arg")
    model = build_model(args.model, args.weights, **model_kwargs)
    example = example_input(model, image_size=args.image_size)
    path = export_model(model, args.out, args.format, example)
    print(f"wrote {path} ({args.format}, input (batch, {', '.join(map(str, example.shape[1:]))}))")
    if args.format == "onnx" and not args.no_check:
        errors = check_onnx(path, model, example)
        worst = max(errors.values())
        summary = ", ".join(f"batch {batch}: {error:.1e}" for batch, error in errors.items())
        print(f"onnxruntime against PyTorch, relative error: {summary}")
        if worst > 1e-4:
            raise RuntimeError(f"onnxruntime's outputs differ from PyTorch's (relative error {worst:.1e})")
    return 0
