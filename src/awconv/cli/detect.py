"""``awconv detect train|eval|predict|report``: Faster R-CNN with FPN on COCO-format data.

See docs/detection.md. The engines are imported inside the actions, so ``--help`` needs no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from awconv.cli import CliError
from awconv.engine.choices import PRECISIONS

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="train, evaluate and run Faster R-CNN detectors",
        description="Faster R-CNN with FPN on plain, SE, CBAM and AW ResNets; COCO-format data.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_train(actions)
    _add_eval(actions)
    _add_predict(actions)
    _add_report(actions)


def _add_train(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("train", help="train a detector (COCO 1x recipe by default)")
    parser.add_argument("--model", default="fasterrcnn_aw_resnet50_fpn", help="fasterrcnn_{backbone}_fpn")
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
        help="torchvision FasterRCNN option",
    )
    parser.add_argument("--min-size", type=int, default=800, help="shorter image side")
    parser.add_argument("--max-size", type=int, default=1333, help="longer image side cap")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=2, help="images per process and step")
    parser.add_argument("--lr", type=float, default=None, help="default: 0.02 x total batch / 16")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-iters", type=int, default=1000)
    parser.add_argument("--milestones", type=int, nargs="*", default=[8, 11], help="epochs of lr decay")
    parser.add_argument("--gamma", type=float, default=0.1)
    _add_runtime(parser)
    parser.add_argument("--devices", type=int, default=1, help="processes per node (DDP when > 1)")
    parser.add_argument("--num-nodes", type=int, default=1)
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
    parser = actions.add_parser("eval", help="COCO box mAP of a checkpoint")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="a checkpoint of 'detect train'")
    parser.add_argument("--data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON")
    parser.add_argument("--batch-size", type=int, default=2)
    _add_runtime(parser)
    parser.set_defaults(func=_eval)


def _add_predict(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("predict", help="draw detected boxes into PNG files")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="a checkpoint of 'detect train'")
    parser.add_argument("--out", default="predictions", help="folder for <image>_pred.png files")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="draw boxes scoring at least this")
    parser.set_defaults(func=_predict)


def _add_report(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("report", help="compare trained runs: mAP table and drawn predictions")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of 'detect train'")
    parser.add_argument(
        "--data", required=True, metavar="coco:IMAGES_DIR,ANNOTATIONS_JSON", help="images to draw"
    )
    parser.add_argument("--out", required=True, help="report folder (report.md and drawings)")
    parser.add_argument("--images", type=int, default=6, help="validation images to draw per run")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="evaluate each run's best checkpoint (chosen on the validation AP) or its last one",
    )
    parser.add_argument("--score-thresh", type=float, default=0.5)
    parser.set_defaults(func=_report)


def _train(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.detection import list_detectors
    from awconv.engine.detection import DetectionConfig, train_detector
    from awconv.engine.detection.report import format_map_table
    from awconv.engine.options import parse_key_values

    if args.model not in list_detectors():
        raise CliError(
            f"--model {args.model!r} is not a registered detector; choose fasterrcnn_{{backbone}}_fpn"
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
        min_size=args.min_size,
        max_size=args.max_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup_iters=args.warmup_iters,
        milestones=tuple(args.milestones),
        gamma=args.gamma,
        workers=args.workers,
        precision=args.precision,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        seed=args.seed,
        deterministic=args.deterministic,
        resume=args.resume,
        progress_bar=not args.no_progress,
    )
    summary = train_detector(config)
    print(format_map_table({args.model: summary}))
    print(f"run directory {config.run_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.engine.detection import evaluate_detector
    from awconv.engine.detection.report import format_map_table

    val = tuple(map(str, parse_coco_spec(args.data, "--data")))
    metrics = evaluate_detector(
        args.weights, val, batch_size=args.batch_size, workers=args.workers, accelerator=args.accelerator
    )
    print(format_map_table({Path(args.weights).name: metrics}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from awconv.engine.detection import load_detector
    from awconv.engine.detection.report import predict_images

    module = load_detector(args.weights)
    written = predict_images(
        module.model, args.images, args.out, module.hparams.categories or {}, args.score_thresh
    )
    print("\n".join(map(str, written)))
    return 0


def _checkpoint(run_dir: Path, which: str) -> Path:
    for name in ("best.ckpt", "last.ckpt") if which == "best" else ("last.ckpt",):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    wanted = "checkpoints/best.ckpt or last.ckpt" if which == "best" else "checkpoints/last.ckpt"
    raise FileNotFoundError(f"run directory {run_dir} holds no {wanted}")


def _report(args: argparse.Namespace) -> int:
    from awconv.data.coco import parse_coco_spec
    from awconv.engine.detection import evaluate_detector, load_detector
    from awconv.engine.detection.report import (
        DetectionRun,
        format_map_table,
        format_seed_summary,
        predict_images,
        write_detection_report,
    )

    images_dir, annotations = parse_coco_spec(args.data, "--data")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[
        : args.images
    ]
    out = Path(args.out)
    saved = [_saved_config(Path(run_dir)) for run_dir in args.runs]
    models = [config.get("model") for config in saved]
    results, drawings, runs = {}, {}, []
    for run_dir, config in zip(map(Path, args.runs), saved, strict=True):
        checkpoint = _checkpoint(run_dir, args.checkpoint)
        module = load_detector(checkpoint)
        model, seed = module.hparams.model, int(config.get("seed", 0))
        label = model if models.count(model) <= 1 else f"{model} seed {seed}"
        if label in results:
            label = f"{label} ({run_dir})"
        results[label] = evaluate_detector(checkpoint, (str(images_dir), str(annotations)), workers=0)
        runs.append(DetectionRun(model, seed, results[label]))
        drawings[label] = predict_images(
            module.model,
            images,
            out / label.replace(" ", "_"),
            module.hparams.categories or {},
            args.score_thresh,
        )
    print(format_map_table(results))
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
