"""``awconv eval MODEL --weights PATH --data SPEC``: validation loss, top-1 and top-5."""

from __future__ import annotations

import argparse

from awconv.cli.train import add_data_arguments
from awconv.engine.classification import evaluate_classifier
from awconv.engine.options import parse_key_values

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate classifier weights",
        description="Evaluate weights on a data set's validation split.",
    )
    parser.add_argument("model", help="a registered model name")
    parser.add_argument("--weights", required=True, metavar="PATH", help=".safetensors or checkpoint")
    add_data_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_classifier(
        args.model,
        args.weights,
        args.data,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
        batch_size=args.batch_size,
        image_size=args.image_size,
        workers=4 if args.workers is None else args.workers,
        precision=args.precision,
        accelerator=args.accelerator or "auto",
        channels_last=args.channels_last,
    )
    print(
        f"{args.model} on {args.data}: top-1 {100 * metrics['val_top1']:.2f}%  "
        f"top-5 {100 * metrics['val_top5']:.2f}%  loss {metrics['val_loss']:.4f}"
    )
    return 0
