"""``awconv inspect MODEL --weights W --data SPEC --out DIR``: what the AW layers' attention does."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="report what a trained model's AW attention does",
        description="Measure every AW layer's attention over validation images and write report.md, "
        "report.html, statistics.json and figures (see docs/inspection.md).",
    )
    parser.add_argument("model", help="a registered model name with AW layers, e.g. aw_resnet20_cifar")
    parser.add_argument("--weights", required=True, metavar="PATH", help=".safetensors or checkpoint")
    parser.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="imagefolder:DIR, cifar:DIR, mnist5k, digits or fashion-mnist[:DIR] (its validation split)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the report's folder")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument as at training, repeatable (e.g. generator=lowrank)",
    )
    parser.add_argument(
        "--images", type=int, default=1000, help="validation images, drawn at random (default 1000)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="image side as at training (default per data set)"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the images (default 0)")
    parser.add_argument(
        "--draw", type=int, default=3, help="images whose attention is drawn per layer (default 3)"
    )
    parser.add_argument(
        "--spectrum-images",
        type=int,
        default=256,
        help="size of the random sample of images for the spectrum (default 256)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from awconv.engine.inspection.run import inspect_classifier
    from awconv.engine.options import parse_key_values

    result, path = inspect_classifier(
        args.model,
        args.weights,
        args.data,
        args.out,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
        images=args.images,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
        draw=args.draw,
        spectrum_images=args.spectrum_images,
        device=args.device,
    )
    print(f"{len(result.layers)} AW layers, {result.images} images; report {path}")
    return 0
