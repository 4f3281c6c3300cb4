"""``awconv train MODEL --data SPEC``: train and evaluate one classifier (see docs/training.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from awconv.engine.classification import TrainConfig, train_classifier
from awconv.engine.optim import OPTIMIZERS, SCHEDULES
from awconv.engine.options import parse_key_values
from awconv.engine.trainer import PRECISIONS

__all__ = ["add_data_arguments", "add_parser", "add_recipe_arguments", "recipe_from_args"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and evaluate a classifier",
        description="Train any registered model on a classification data set with Lightning.",
    )
    parser.add_argument("model", help="a registered model name, e.g. aw_resnet20_cifar or resnet50")
    add_data_arguments(parser)
    parser.add_argument(
        "--pretrained", metavar="PATH", help="start from these weights (.safetensors or checkpoint)"
    )
    parser.add_argument("--out", default=None, help="run directory (default: runs/<model>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        metavar="CKPT",
        help="continue the run in --out from its last checkpoint, or from CKPT, with its saved configuration "
        "(only --epochs, --workers, --devices, --num-nodes, --accelerator and --no-progress may change)",
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--model-arg``, ``--batch-size``, ``--image-size``, ``--workers``, ``--precision``..."""
    parser.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="imagefolder:DIR, cifar:DIR, mnist5k, digits or fashion-mnist[:DIR]",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument, repeatable (e.g. generator=lowrank)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per process and step")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default per data set)")
    parser.add_argument("--workers", type=int, default=None, help="data loader processes (default 4)")
    parser.add_argument(
        "--precision", choices=sorted(PRECISIONS), default="32", help="bf16/16: mixed precision"
    )
    parser.add_argument("--accelerator", default=None, help="auto (default), cpu, gpu, ...")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Optimisation, schedule and scale options shared by ``train`` and ``compare``."""
    parser.add_argument("--epochs", type=int, default=None, help="default 90")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="not applied to norms and biases")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--step-epochs", type=int, default=30, help="step schedule: epochs between decays")
    parser.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument(
        "--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--devices", type=int, default=None, help="processes per node (DDP when > 1)")
    parser.add_argument("--num-nodes", type=int, default=None)
    parser.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm under DDP")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only (torch.use_deterministic_algorithms): same seed, same weights",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def recipe_from_args(args: argparse.Namespace, **fields) -> TrainConfig:
    """A ``TrainConfig`` from parsed arguments (``None``: the default); ``fields`` override the rest."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in known and v is not None}
    values.update(progress_bar=not args.no_progress, **fields)
    return TrainConfig(**values)


def _resumed_config(args: argparse.Namespace, run_dir: Path) -> TrainConfig:
    """The configuration saved in ``run_dir`` with the launch options of this command line."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        raise FileNotFoundError(f"--resume: '{saved_path}' does not exist; is --out the run directory?")
    saved = json.loads(saved_path.read_text())
    config = TrainConfig(
        **{f.name: saved[f.name] for f in dataclasses.fields(TrainConfig) if f.name in saved}
    )
    launch = {k: getattr(args, k) for k in _LAUNCH_OPTIONS if getattr(args, k) is not None}
    return dataclasses.replace(config, **launch, resume=args.resume, progress_bar=not args.no_progress)


_LAUNCH_OPTIONS = ("epochs", "workers", "devices", "num_nodes", "accelerator")


def run(args: argparse.Namespace) -> int:
    run_dir = args.out or f"runs/{args.model}"
    if args.resume is not None:
        config = _resumed_config(args, Path(run_dir))
    else:
        config = recipe_from_args(
            args, model_kwargs=parse_key_values(args.model_arg, "--model-arg"), run_dir=run_dir
        )
    summary = train_classifier(config)
    if summary:
        print(
            f"best val top-1 {100 * summary['best_val_top1']:.2f}% at epoch {summary['best_epoch']}; "
            f"run directory {config.run_dir}"
        )
    return 0
