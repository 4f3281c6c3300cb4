"""``awconv compare --models A B --seeds 0 1 --data SPEC``: train models x seeds, write a report."""

from __future__ import annotations

import argparse

from awconv.cli.train import add_data_arguments, add_recipe_arguments, recipe_from_args

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare models over seeds",
        description=(
            "Train every model with every seed on one data set with one recipe; write report.md and "
            "report.html (top-1 mean ± 95% CI, params, GMACs, images/s, plots). Finished runs are reused."
        ),
    )
    parser.add_argument(
        "--models", nargs="+", required=True, metavar="MODEL", help="model names, or name:key=value,key=value"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("MODEL", "BASELINE"),
        help="compare MODEL with BASELINE seed by seed, repeatable (default: every model with the first)",
    )
    parser.add_argument(
        "--pretrained",
        metavar="PATH",
        help="every run starts from these weights (a plain ResNet's also fill SE/CBAM/AW models)",
    )
    parser.add_argument("--out", default="runs/compare", help="comparison directory")
    add_data_arguments(parser)
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from awconv.engine.classification import compare_classifiers

    if args.model_arg:
        raise ValueError(
            "compare takes model arguments inside --models (name:key=value,...), not --model-arg"
        )
    recipe = recipe_from_args(args, model="", run_dir="")
    _, report = compare_classifiers(args.models, args.seeds, recipe, args.out, pairs=args.pair)
    print(f"report: {report} and {report.with_suffix('.html')}")
    return 0
