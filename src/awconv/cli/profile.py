"""``awconv profile``: parameters, GMACs and overhead over the plain ResNet of the same depth."""

from __future__ import annotations

import argparse

__all__ = ["FORMATS", "add_parser", "run"]

# awconv.profiling.FORMATS, written out so that the help needs no torch (tests/cli check they agree).
FORMATS = ("table", "markdown", "json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``profile`` sub-command."""
    parser = subparsers.add_parser(
        "profile",
        help="count parameters and GMACs, and the overhead over the plain model",
        description=(
            "Counts parameters and GMACs (torch FlopCounterMode, MACs = FLOPs / 2, attention "
            "generators included) of registered models, and their overhead over the plain ResNet "
            "of the same depth (e.g. aw_seresnet50 against resnet50)."
        ),
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered model names")
    parser.add_argument(
        "--image-size", type=int, default=None, help="square input side (default: the model's, 224 or 32)"
    )
    # The option's earlier name, kept working for old scripts and not shown.
    parser.add_argument("--img-size", dest="image_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help="samples per forward pass")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument, repeatable, e.g. --model-arg generator=lowrank --model-arg rank=4",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profiles every model and prints the table; returns the exit status."""
    from awconv.engine.options import parse_key_values
    from awconv.profiling import format_profiles, profile_model

    model_kwargs = parse_key_values(args.model_arg, "--model-arg")
    profiles = [
        profile_model(name, img_size=args.image_size, batch_size=args.batch_size, **model_kwargs)
        for name in args.models
    ]
    print(format_profiles(profiles, args.format))
    return 0
