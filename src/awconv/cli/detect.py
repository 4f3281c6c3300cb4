"""``awconv detect train|eval|predict|report``: Faster and Mask R-CNN with FPN on COCO-format data.

See docs/detection.md. The engines are imported inside the actions, so ``--help`` needs no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from awconv.cli import CliError
from awconv.engine.choices import DETECTION_SCHEDULES, PRECISIONS

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="train, evaluate and run Faster and Mask R-CNN detectors",
        description="Faster and Mask R-CNN with FPN on plain, SE, CBAM and AW ResNets; COCO-format data.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_train(actions)
    _add_eval(actions)
    _add_predict(actions)
    _add_report(actions)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"800"`` -> (800,); ``"480,512,...,800"`` -> (480, 512, 544, ..., 800): an even step, inclusive."""
    parts = [part.strip() for part in text.split(",")]
    try:
        if "..." not in parts:
            sizes = tuple(int(part) for part in parts)
        else:
            if parts.count("...") != 1 or parts.index("...") < 2 or parts[-1] == "...":
                raise ValueError
            where = parts.index("...")
            head = [int(part) for part in parts[:where]]
            tail = [int(part) for part in parts[where + 1 :]]
            step = head[-1] - head[-2]
            if step <= 0 or (tail[0] - head[-1]) % step:
                raise ValueError
            sizes = (*head[:-1], *range(head[-1], tail[0], step), *tail)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive ints separated by commas (800, or 480,512,...,800 with an even step), "
            f"got {text!r}"
        ) from None
    if not all(size > 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return sizes


def _add_train(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("train", help="train a detector (the 1x schedule by default)")
    parser.add_argument(
        "--model",
        default="fasterrcnn_aw_resnet50_fpn",
        help="fasterrcnn_{backbone}_fpn or maskrcnn_{backbone}_fpn",
    )
    parser.add_argument(
        "--data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON", help="training set"
    )
    parser.add_argument(
        "--val-data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON", help="validation set"
    )
    parser.add_argument("--out", default=None, help="run directory (default: runs/<model>)")
    parser.add_argument(
        "--resume", nargs="?", const="last", default=None, metavar="CKPT", help="continue --out"
    )
    parser.add_argument("--pretrained-backbone", metavar="PATH", help="plain ResNet weights for the backbone")
    parser.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="frozen BatchNorm and early stages (default: with --pretrained-backbone)",
    )
    parser.add_argument(
        "--trainable-layers", type=int, default=3, help="frozen backbone: stages that train (0-5)"
    )
    parser.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE", help="backbone option"
    )
    parser.add_argument(
        "--detector-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="torchvision FasterRCNN/MaskRCNN option",
    )
    parser.add_argument(
        "--min-size",
        type=parse_sizes,
        default=(800,),
        metavar="SIZES",
        help="shorter image side; several (480,512,...,800) train at a random one per image, "
        "evaluate at the last",
    )
    parser.add_argument("--max-size", type=int, default=1333, help="longer image side cap")
    parser.add_argument(
        "--schedule",
        choices=DETECTION_SCHEDULES,
        default="1x",
        help="1x: 12 epochs, decay after 8, 11; 2x: 24 (16, 22); 3x: 36 (27, 33); torchvision: 26 (16, 22)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="replace the schedule's epochs")
    parser.add_argument(
        "--milestones", type=int, nargs="*", default=None, help="replace the schedule's epochs of lr decay"
    )
    parser.add_argument("--batch-size", type=int, default=2, help="images per process and step")
    parser.add_argument(
        "--val-batch-size", type=int, default=1, help="validation images per step (1: AP independent of it)"
    )
    parser.add_argument(
        "--aspect-ratio-group-factor",
        type=int,
        default=3,
        help="batch images of similar aspect ratio, 2k+2 bins as torchvision's references; -1: off",
    )
    parser.add_argument("--lr", type=float, default=None, help="default: 0.02 x total batch / 16")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="of weights; biases get none")
    parser.add_argument(
        "--norm-weight-decay", type=float, default=0.0, help="of BatchNorm/GroupNorm/LayerNorm parameters"
    )
    parser.add_argument("--warmup-iters", type=int, default=1000)
    parser.add_argument("--gamma", type=float, default=0.1)
    _add_runtime(parser)
    parser.add_argument("--devices", type=int, default=1, help="processes per node (DDP when > 1)")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm under DDP (GPUs)")
    parser.add_argument(
        "--precision", choices=sorted(PRECISIONS), default="32", help="bf16/16: mixed precision"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms where torch has them"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_train)


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")


def _add_eval(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("eval", help="COCOeval figures and per-class AP of a checkpoint")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="a checkpoint of 'detect train'")
    parser.add_argument("--data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (1: AP independent of it)")
    parser.add_argument(
        "--devices", type=int, default=1, help="processes (DDP when > 1); each image counted once"
    )
    parser.add_argument("--out", metavar="JSON", help="also write the figures to this json")
    _add_runtime(parser)
    parser.set_defaults(func=_eval)


def _add_predict(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "predict", help="detect objects in images: COCO results json, optionally drawn images"
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: all of --data)")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="a checkpoint of 'detect train'")
    parser.add_argument(
        "--data",
        metavar="coco:IMAGES_DIR,JSON",
        help="take images and their ids from this json (ids are file names without it)",
    )
    parser.add_argument("--out", default="predictions", help="folder for predictions.json and drawings")
    parser.add_argument("--draw", action="store_true", help="also draw the detections into <image>_pred.png")
    parser.add_argument(
        "--score-thresh", type=float, default=0.5, help="draw detections scoring at least this"
    )
    _add_runtime(parser)
    parser.set_defaults(func=_predict)


def _add_report(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("report", help="compare trained runs: COCOeval tables and drawn predictions")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of 'detect train'")
    parser.add_argument(
        "--data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON", help="evaluation set"
    )
    parser.add_argument("--out", required=True, help="report folder (report.md and drawings)")
    parser.add_argument("--images", type=int, default=6, help="images to draw per run (the json's first)")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="evaluate each run's best checkpoint (chosen on the validation AP) or its last one",
    )
    parser.add_argument("--score-thresh", type=float, default=0.5)
    parser.set_defaults(func=_report)


def _print_tables(results: dict[str, dict], *, per_class: bool) -> None:
    """The box table, the mask table for mask detectors and, with ``per_class``, AP per category."""
    from lightning.pytorch.utilities import rank_zero_only

    from awconv.engine.detection.report import format_class_table, format_map_table

    if rank_zero_only.rank != 0:
        return
    print(format_map_table(results))
    masked = {label: metrics for label, metrics in results.items() if "mask_AP" in metrics}
    if masked:
        print("masks:\n" + format_map_table(masked, "mask_"))
    if per_class:
        for title, prefix, chosen in (("box", "", results), ("mask", "mask_", masked)):
            table = format_class_table(chosen, prefix)
            if table:
                print(f"{title} AP per category:\n{table}")


def _train(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities import rank_zero_only

    from awconv.data.coco import parse_coco_spec
    from awconv.detection import list_detectors
    from awconv.engine.detection import DetectionConfig, train_detector
    from awconv.engine.options import parse_key_values

    if args.model not in list_detectors():
        raise CliError(
            f"--model {args.model!r} is not a registered detector; choose fasterrcnn_{{backbone}}_fpn or "
            "maskrcnn_{backbone}_fpn"
        )
    train = tuple(map(str, parse_coco_spec(args.data, "--data")))
    val = tuple(map(str, parse_coco_spec(args.val_data, "--val-data")))
    config = DetectionConfig(
        model=args.model,
        train=train,
        val=val,
        run_dir=args.out or f"runs/{args.model}",
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
        detector_kwargs=parse_key_values(args.detector_arg, "--detector-arg"),
        pretrained_backbone=args.pretrained_backbone,
        freeze=args.freeze,
        trainable_layers=args.trainable_layers,
        min_size=args.min_size if len(args.min_size) > 1 else args.min_size[0],
        max_size=args.max_size,
        schedule=args.schedule,
        epochs=args.epochs,
        milestones=None if args.milestones is None else tuple(args.milestones),
        batch_size=args.batch_size,
        val_batch_size=args.val_batch_size,
        aspect_ratio_group_factor=args.aspect_ratio_group_factor,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        norm_weight_decay=args.norm_weight_decay,
        warmup_iters=args.warmup_iters,
        gamma=args.gamma,
        workers=args.workers,
        precision=args.precision,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        sync_batchnorm=args.sync_batchnorm,
        seed=args.seed,
        deterministic=args.deterministic,
        resume=args.resume,
        progress_bar=not args.no_progress,
    )
    summary = train_detector(config)
    _print_tables({args.model: summary}, per_class=False)
    if rank_zero_only.rank == 0:
        print(f"run directory {config.run_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.engine.detection import evaluate_detector

    val = tuple(map(str, parse_coco_spec(args.data, "--data")))
    metrics = evaluate_detector(
        args.weights,
        val,
        batch_size=args.batch_size,
        workers=args.workers,
        accelerator=args.accelerator,
        devices=args.devices,
        out=args.out,
    )
    _print_tables({Path(args.weights).name: metrics}, per_class=True)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.engine.detection import predict_detector
    from awconv.engine.detection.predict import coco_image_files, path_image_files

    if args.data:
        images_dir, annotations = parse_coco_spec(args.data, "--data")
        files = coco_image_files(images_dir, annotations, only=args.images)
    else:
        files = path_image_files(args.images)
    out_file, drawn = predict_detector(
        args.weights,
        files,
        args.out,
        draw=args.draw,
        score_thresh=args.score_thresh,
        accelerator=args.accelerator,
        workers=args.workers,
    )
    print(f"{len(files)} image(s): {out_file}" + (f", {len(drawn)} drawn in {args.out}" if args.draw else ""))
    return 0


def _checkpoint(run_dir: Path, which: str) -> Path:
    for name in ("best.ckpt", "last.ckpt") if which == "best" else ("last.ckpt",):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    wanted = "checkpoints/best.ckpt or last.ckpt" if which == "best" else "checkpoints/last.ckpt"
    raise FileNotFoundError(f"run directory {run_dir} holds no {wanted}")


def _report(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.engine.detection import evaluate_detector, load_detector, predict_detector
    from awconv.engine.detection.predict import coco_image_files
    from awconv.engine.detection.report import DetectionRun, format_seed_summary, write_detection_report

    images_dir, annotations = parse_coco_spec(args.data, "--data")
    files = coco_image_files(images_dir, annotations, limit=args.images)
    out = Path(args.out)
    saved = [_saved_config(Path(run_dir)) for run_dir in args.runs]
    models = [config.get("model") for config in saved]
    results, drawings, runs = {}, {}, []
    for run_dir, config in zip(map(Path, args.runs), saved, strict=True):
        checkpoint = _checkpoint(run_dir, args.checkpoint)
        model, seed = load_detector(checkpoint).hparams.model, int(config.get("seed", 0))
        label = model if models.count(model) <= 1 else f"{model} seed {seed}"
        if label in results:
            label = f"{label} ({run_dir})"
        results[label] = evaluate_detector(checkpoint, (str(images_dir), str(annotations)), workers=0)
        runs.append(DetectionRun(model, seed, results[label]))
        _, drawings[label] = predict_detector(
            checkpoint, files, out / label.replace(" ", "_"), draw=True, score_thresh=args.score_thresh
        )
    _print_tables(results, per_class=False)
    summary = format_seed_summary(runs)
    if summary:
        print(summary)
    report = write_detection_report(
        out / "report.md", results, drawings, runs=runs, checkpoint=args.checkpoint
    )
    print(f"report {report}")
    return 0


def _saved_config(run_dir: Path) -> dict:
    """The run's config.json (model, seed...), or {} when it has none."""
    path = run_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
