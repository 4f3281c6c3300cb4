"""Does the evaluation batch size change COCO AP? A measurement for docs/detection.md.

torchvision's detectors pad the images of a batch to one tensor (the largest image, rounded up to
a multiple of 32). Convolutions near an image's right and bottom edges then see the padding's
activations instead of their own zero padding, and every AW layer's attention pools over the
padded tensor, so a detection can change with the images it is batched with. This evaluates
trained checkpoints at several batch sizes on a set with mixed aspect ratios and prints AP and
AR100 per batch size. ``--max-size`` replaces the checkpoints' longer-side cap, so that wide and
tall images pad each other (at the shapes demo's 96 x 96 every image pads to 96 x 96 alone)::

    awconv make-shapes runs/padding --images 100 --size 96 --aspect-ratios 0.75 1 1.33 --seed 5
    python benchmarks/bench_detection_padding.py runs/demo-detect/plain/checkpoints/best.ckpt \\
        runs/demo-detect/aw/checkpoints/best.ckpt --max-size 128 \\
        --data coco:runs/padding/val,runs/padding/annotations/instances_val.json
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl

from awconv.data.coco import parse_coco_spec
from awconv.engine.detection import DetectionDataModule, load_detector


def evaluate(checkpoint: str, data: str, batch_size: int, max_size: int | None) -> dict[str, float]:
    """COCO figures of a checkpoint at one evaluation batch size (and longer-side cap)."""
    module = load_detector(checkpoint)
    if max_size is not None:
        module.model.transform.max_size = max_size
    datamodule = DetectionDataModule(
        parse_coco_spec(data), val_batch_size=batch_size, workers=0, categories=module.hparams.categories
    )
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return module.coco_metrics


def measure(checkpoints: Sequence[str], data: str, batch_sizes: Sequence[int], max_size: int | None) -> str:
    """A Markdown table: per checkpoint and batch size, AP and AR100 in percent."""
    header = " | ".join(f"AP / AR100 at batch {b}" for b in batch_sizes)
    lines = [f"| checkpoint | {header} |", "|---" * (len(batch_sizes) + 1) + "|"]
    for checkpoint in checkpoints:
        cells = []
        for batch_size in batch_sizes:
            metrics = evaluate(checkpoint, data, batch_size, max_size)
            cells.append(f"{100 * metrics['AP']:.3f} / {100 * metrics['AR100']:.3f}")
        model = load_detector(checkpoint).hparams.model
        lines.append(f"| {model} ({Path(checkpoint).name}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of 'awconv detect train'")
    parser.add_argument("--data", required=True, metavar="coco:IMAGES_DIR,JSON", help="evaluation set")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--max-size", type=int, default=None, help="replace the checkpoints' longer-side cap")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(measure(args.checkpoints, args.data, args.batch_sizes, args.max_size))


if __name__ == "__main__":
    main()
