"""Does the evaluation batch size change COCO AP? A measurement for docs/detection.md.

torchvision's detectors pad the images of a batch to one tensor (the largest image, rounded up to
a multiple of 32). Convolutions near an image's right and bottom edges then see the padding's
activations instead of their own zero padding, and every AW layer's attention pools over the
padded tensor, so a detection can change with the images it is batched with. This evaluates
trained checkpoints at several batch sizes on a set with mixed aspect ratios and prints AP and
AR100 per batch size::

    awconv make-shapes runs/padding --images 200 --size 96 --aspect-ratios 0.75 1 1.33 --seed 5
    python benchmarks/bench_detection_padding.py runs/demo-detect/plain/checkpoints/best.ckpt \\
        runs/demo-detect/aw/checkpoints/best.ckpt \\
        --data coco:runs/padding/val,runs/padding/annotations/instances_val.json
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from awconv.data.coco import parse_coco_spec
from awconv.engine.detection import evaluate_detector, load_detector


def measure(checkpoints: Sequence[str], data: str, batch_sizes: Sequence[int]) -> str:
    """A Markdown table: per checkpoint and batch size, AP and AR100 in percent."""
    images_dir, annotations = parse_coco_spec(data)
    val = (str(images_dir), str(annotations))
    header = " | ".join(f"AP / AR100 at batch {b}" for b in batch_sizes)
    lines = [f"| checkpoint | {header} |", "|---" * (len(batch_sizes) + 1) + "|"]
    for checkpoint in checkpoints:
        cells = []
        for batch_size in batch_sizes:
            metrics = evaluate_detector(checkpoint, val, batch_size=batch_size, workers=0, accelerator="cpu")
            cells.append(f"{100 * metrics['AP']:.2f} / {100 * metrics['AR100']:.2f}")
        model = load_detector(checkpoint).hparams.model
        lines.append(f"| {model} ({Path(checkpoint).name}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of 'awconv detect train'")
    parser.add_argument("--data", required=True, metavar="coco:IMAGES_DIR,JSON", help="evaluation set")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(measure(args.checkpoints, args.data, args.batch_sizes))


if __name__ == "__main__":
    main()
