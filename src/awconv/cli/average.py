"""``awconv average RUN [--top K]``: average a run's best checkpoints and evaluate the result."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "average",
        help="average a run's best checkpoints",
        description=(
            "Average the weights of the best checkpoints a run kept (train --keep-top K), ranked by "
            "validation top-1, as timm's avg_checkpoints.py does; write RUN/average-top<K>.safetensors, "
            "evaluate it on the run's validation split and write RUN/average-top<K>.json."
        ),
    )
    parser.add_argument("run", metavar="RUN", help="the run directory")
    parser.add_argument("--top", type=int, default=None, metavar="K", help="the K best (default: all kept)")
    parser.add_argument("--batch-size", type=int, default=128, help="evaluation batch")
    parser.add_argument("--workers", type=int, default=4, help="data loader processes")
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from awconv.engine.classification.average import average_checkpoints

    result = average_checkpoints(
        args.run,
        top=args.top,
        batch_size=args.batch_size,
        workers=args.workers,
        accelerator=args.accelerator,
        progress_bar=not args.no_progress,
    )
    epochs = ", ".join(map(str, result["epochs"]))
    print(
        f"{args.run}/{result['weights']} (epochs {epochs}): top-1 {100 * result['val_top1']:.2f}%  "
        f"loss {result['val_loss']:.4f}"
    )
    return 0
