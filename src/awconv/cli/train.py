"""``awconv train MODEL --data SPEC``: train and evaluate one classifier (see docs/training.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from awconv.cli import CliError
from awconv.engine.choices import AUTO_AUGMENT, INTERPOLATIONS, OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULES

__all__ = ["add_data_arguments", "add_parser", "add_recipe_arguments", "recipe_from_args"]

# Command-line destinations that are not named like the TrainConfig field they set.
_FIELDS = {"model_arg": "model_kwargs", "no_progress": "progress_bar", "out": "run_dir"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and evaluate a classifier",
        description="Train any registered model on a classification data set with Lightning.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="a registered model name, e.g. aw_resnet20_cifar or resnet50 (default: --config's)",
    )
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
    """Optimisation, schedule, augmentation and scale options shared by ``train`` and ``compare``."""
    parser.add_argument(
        "--config",
        metavar="FILE|NAME",
        help="options from a YAML or JSON file with config.json's keys (a run's config.json re-runs it) "
        f"or a shipped recipe ({', '.join(RECIPES)}); options written here override it",
    )
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="sgd", help="timm.optim's; sgd is Nesterov"
    )
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--momentum", type=float, default=0.9, help="sgd and lars momentum")
    parser.add_argument(
        "--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"), help="adamw and lamb betas"
    )
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="not applied to norms and biases")
    parser.add_argument(
        "--layer-decay", type=float, default=None, metavar="RATE", help="layer-wise lr decay, in (0, 1]"
    )
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up, at most --epochs")
    parser.add_argument("--warmup-lr", type=float, default=0.0, help="learning rate the warm-up starts from")
    parser.add_argument("--min-lr", type=float, default=0.0, help="learning rate the schedule decays to")
    parser.add_argument("--step-epochs", type=int, default=30, help="step schedule: epochs between decays")
    parser.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument(
        "--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm"
    )
    parser.add_argument(
        "--grad-accum", type=int, default=1, metavar="N", help="accumulate gradients over N batches per step"
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="weight EMA decay (e.g. 0.9998), validated beside the raw weights",
    )
    parser.add_argument("--ema-warmup", action="store_true", help="timm's EMA warm-up of the decay")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="Mixup alpha (0: off)")
    parser.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="CutMix alpha (0: off)")
    parser.add_argument(
        "--mixup-switch-prob", type=float, default=0.5, metavar="P", help="with both: P(CutMix) per batch"
    )
    parser.add_argument(
        "--auto-augment",
        default=None,
        metavar="POLICY",
        help=f"rand-m9-mstd0.5 (or any timm rand-... string), {', '.join(AUTO_AUGMENT)}",
    )
    parser.add_argument(
        "--random-erase", type=float, default=0.0, metavar="P", help="random erasing probability"
    )
    parser.add_argument(
        "--val-crop-pct",
        type=float,
        default=None,
        metavar="PCT",
        help="validation: resize to size/PCT, centre-crop (default: 0.875 for imagefolder, none otherwise)",
    )
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear")
    parser.add_argument(
        "--keep-top",
        type=int,
        default=0,
        metavar="K",
        help="keep the K best checkpoints (for awconv average)",
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
    """A ``TrainConfig`` from parsed arguments over ``--config``'s values; ``fields`` override both.

    Raises:
        CliError: no model or no data from the command line, ``--config`` or ``fields``.
    """
    from awconv.engine.classification import TrainConfig
    from awconv.engine.classification.recipe_file import read_config_file

    values = _option_values(args)
    if args.config:
        written = _written(args)
        values.update({k: v for k, v in read_config_file(args.config).items() if k not in written})
    values.update(fields)
    for name, option in (("model", "MODEL"), ("data", "--data")):
        if values.get(name) is None:
            raise CliError(
                f"the following argument is required: {option} (unless --config or --resume gives it)"
            )
    return TrainConfig(**values)


def _option_values(args: argparse.Namespace) -> dict:
    """The ``TrainConfig`` fields the parsed options give (written or left at their defaults)."""
    import dataclasses

    from awconv.engine.classification import TrainConfig
    from awconv.engine.options import parse_key_values

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in known}
    values.update(
        progress_bar=not args.no_progress,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
    )
    return values


def _written(args: argparse.Namespace) -> set[str]:
    """The ``TrainConfig`` fields of the options written on the command line (all, without ``main``)."""
    return {_FIELDS.get(dest, dest) for dest in getattr(args, "explicit", set(vars(args)))}


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
    given = _option_values(args)
    values = {name: saved[name] for name in fields if name in saved}
    values.update({name: given[name] for name in fields & _written(args) if name in given})
    return TrainConfig(**{**values, "run_dir": str(run_dir), "resume": args.resume})


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from awconv.engine.classification import train_classifier

    if args.resume is not None:
        if args.config:
            raise CliError("--config with --resume: a resumed run keeps its saved configuration")
        if args.model is None and args.out is None:
            raise CliError("the following argument is required: MODEL or --out (the run to resume)")
        config = _resumed_config(args, Path(args.out or f"runs/{args.model}"))
    else:
        config = recipe_from_args(args, run_dir=args.out or "")
        config = dataclasses.replace(config, run_dir=config.run_dir or f"runs/{config.model}")
    summary = train_classifier(config)
    if summary:
        print(
            f"best val top-1 {100 * summary['best_val_top1']:.2f}% at epoch {summary['best_epoch']}; "
            f"run directory {config.run_dir}"
        )
    return 0
