"""``awconv train MODEL --data SPEC``: train and evaluate one classifier (see docs/training.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from awconv.cli import CliError
from awconv.engine.choices import OPTIMIZERS, PRECISIONS, SCHEDULES

__all__ = ["add_data_arguments", "add_parser", "add_recipe_arguments", "recipe_from_args"]

# Command-line destinations that are not named like the TrainConfig field they set.
_FIELDS = {"model_arg": "model_kwargs", "no_progress": "progress_bar", "out": "run_dir"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and evaluate a classifier",
        description="Train any registered model on a classification data set with Lightning.",
    )
    parser.add_argument("model", help="a registered model name, e.g. aw_resnet20_cifar or resnet50")
    add_data_arguments(parser, data_required=False)
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
        help="continue the run in --out, from any working directory, from its last checkpoint (or CKPT) "
        "with its saved configuration; only --epochs, --workers, --devices, --num-nodes, --accelerator "
        "and --no-progress may change, another value of any other option is an error",
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def add_data_arguments(parser: argparse.ArgumentParser, *, data_required: bool = True) -> None:
    """``--data``, ``--model-arg``, ``--batch-size``, ``--image-size``, ``--workers``, ``--precision``...

    Args:
        parser: the command's parser.
        data_required: ``--data`` must be given; otherwise the command says when it needs it.
    """
    parser.add_argument(
        "--data",
        required=data_required,
        metavar="SPEC",
        help="imagefolder:DIR, cifar:DIR, mnist5k, digits or fashion-mnist[:DIR]"
        + ("" if data_required else " (default: the run's, with --resume or a run's weights)"),
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument, repeatable (e.g. generator=lowrank)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per process and step")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: per data set)")
    parser.add_argument("--workers", type=int, default=4, help="data loader processes")
    parser.add_argument(
        "--precision", choices=sorted(PRECISIONS), default="32", help="bf16/16: mixed precision"
    )
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Optimisation, schedule and scale options shared by ``train`` and ``compare``."""
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="not applied to norms and biases")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up, at most --epochs")
    parser.add_argument("--step-epochs", type=int, default=30, help="step schedule: epochs between decays")
    parser.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument(
        "--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--devices", type=int, default=1, help="processes per node (DDP when > 1)")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument(
        "--sync-batchnorm",
        action="store_true",
        help="SyncBatchNorm under DDP; GPUs only (torch's SyncBatchNorm does not run on CPUs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only (torch.use_deterministic_algorithms): same seed, same weights",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def recipe_from_args(args: argparse.Namespace, **fields):
    """A ``TrainConfig`` from parsed arguments; ``fields`` override them."""
    import dataclasses

    from awconv.engine.classification import TrainConfig
    from awconv.engine.options import parse_key_values

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in known}
    values.update(
        progress_bar=not args.no_progress,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
        **fields,
    )
    return TrainConfig(**values)


def _resumed_config(args: argparse.Namespace, run_dir: Path):
    """The configuration saved in ``run_dir``, with the options written on this command line.

    Options not written keep their saved values; written ones replace them, and ``train_classifier``
    rejects any that may not change (``RESUME_MAY_CHANGE``) with a one-line error.
    """
    import dataclasses

    from awconv.engine.classification import TrainConfig
    from awconv.engine.run_config import CONFIG_FILE, read_run_config

    saved = read_run_config(run_dir)
    if saved is None:
        raise FileNotFoundError(
            f"--resume: '{run_dir / CONFIG_FILE}' does not exist; is --out the run directory?"
        )
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = recipe_from_args(args, run_dir=str(run_dir))
    written = {_FIELDS.get(dest, dest) for dest in getattr(args, "explicit", set(vars(args)))}
    values = {name: saved[name] for name in fields if name in saved}
    values.update({name: getattr(given, name) for name in fields & written})
    return TrainConfig(**{**values, "run_dir": str(run_dir), "resume": args.resume})


def run(args: argparse.Namespace) -> int:
    from awconv.engine.classification import train_classifier

    run_dir = args.out or f"runs/{args.model}"
    if args.resume is not None:
        config = _resumed_config(args, Path(run_dir))
    elif args.data is None:
        raise CliError("the following argument is required: --data (unless --resume continues a run)")
    else:
        config = recipe_from_args(args, run_dir=run_dir)
    summary = train_classifier(config)
    if summary:
        print(
            f"best val top-1 {100 * summary['best_val_top1']:.2f}% at epoch {summary['best_epoch']}; "
            f"run directory {config.run_dir}"
        )
    return 0
