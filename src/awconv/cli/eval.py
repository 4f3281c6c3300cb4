"""``awconv eval [MODEL] --weights PATH --data SPEC``: validation loss, top-1 and top-5."""

from __future__ import annotations

import argparse

from awconv.cli.train import add_data_arguments

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate classifier weights",
        description=(
            "Evaluate weights on a data set's validation split. Weights of a training run (its "
            "best.safetensors or checkpoints/*.ckpt, or --run DIR) are evaluated as the run was trained: "
            "model, model arguments, image size, channels and classes come from the run's config.json, "
            "and an option given here that contradicts the run is used with a warning."
        ),
    )
    parser.add_argument("model", nargs="?", help="a registered model name (default: the run's)")
    parser.add_argument(
        "--weights", metavar="PATH", help=".safetensors or checkpoint (default: the run's best.safetensors)"
    )
    parser.add_argument("--run", metavar="DIR", help="the training run the weights come from")
    parser.add_argument(
        "--ema", action="store_true", help="the run's EMA weights, best-ema.safetensors (a run with --ema)"
    )
    add_data_arguments(parser, data_required=False)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from awconv.engine.classification import evaluate_classifier
    from awconv.engine.options import parse_key_values

    metrics = evaluate_classifier(
        args.model,
        args.weights,
        args.data,
        run_dir=args.run,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg") if args.model_arg else None,
        batch_size=args.batch_size,
        image_size=args.image_size,
        workers=args.workers,
        precision=args.precision,
        accelerator=args.accelerator,
        channels_last=args.channels_last,
        progress_bar=not args.no_progress,
        ema=args.ema,
    )
    weights = args.weights or f"{args.run}/{'best-ema' if args.ema else 'best'}.safetensors"
    top5 = f"  top-5 {100 * metrics['val_top5']:.2f}%" if "val_top5" in metrics else ""
    print(f"{weights}: top-1 {100 * metrics['val_top1']:.2f}%{top5}  loss {metrics['val_loss']:.4f}")
    return 0
