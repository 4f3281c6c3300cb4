"""``awconv make-shapes OUT_DIR``: write a small synthetic COCO-format detection set."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-shapes",
        help="write a synthetic COCO-format detection set",
        description="Filled circles, squares and triangles on textured backgrounds, train and val splits: "
        "boxes and polygon masks in COCO json.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--images", type=int, default=300, help="images in both splits together")
    parser.add_argument("--size", type=int, default=96, help="image height in pixels")
    parser.add_argument(
        "--aspect-ratios",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="R",
        help="image width / height, drawn from these per image (default: square)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of validation images")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from awconv.data.shapes import make_shapes

    splits = make_shapes(
        args.out_dir,
        images=args.images,
        size=args.size,
        seed=args.seed,
        val_fraction=args.val_fraction,
        aspect_ratios=tuple(args.aspect_ratios),
    )
    for split, (images_dir, annotation_file) in splits.items():
        print(f"{split}: coco:{images_dir},{annotation_file}")
    return 0
