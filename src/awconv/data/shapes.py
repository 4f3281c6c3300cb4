"""A synthetic COCO-format detection set: filled shapes on textured backgrounds.

For offline demos and tests. Each image holds one to four non-overlapping circles, squares and
triangles (rotated, in random colours) on a smooth random texture with pixel noise. The output is
what COCO ships: ``train/`` and ``val/`` PNG folders and ``annotations/instances_{train,val}.json``
with boxes, instance masks as polygon segmentations, areas (of the polygons) and categories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_CLASSES", "make_shapes"]

SHAPE_CLASSES = ("circle", "square", "triangle")
_MAX_SHAPES = 4
_PLACEMENT_TRIES = 50


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour field (a bilinearly upsampled 4x4 grid) plus pixel noise."""
    grid = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR), dtype=np.float32)
    noisy = smooth + rng.normal(0, 12, size=smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def _polygon(
    rng: np.random.Generator, shape: str, cx: float, cy: float, radius: float
) -> list[tuple[float, float]]:
    """The outline of a shape around (cx, cy); circles are 24-gons."""
    vertices = {"circle": 24, "square": 4, "triangle": 3}[shape]
    turn = 0.0 if shape == "circle" else rng.uniform(0, 2 * math.pi)
    return [
        (
            cx + radius * math.cos(turn + 2 * math.pi * k / vertices),
            cy + radius * math.sin(turn + 2 * math.pi * k / vertices),
        )
        for k in range(vertices)
    ]


def _polygon_area(points: list[tuple[float, float]]) -> float:
    return 0.5 * abs(
        sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    )


def _disjoint(box: list[float], boxes: list[list[float]]) -> bool:
    x, y, w, h = box
    return all(x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y for bx, by, bw, bh in boxes)


def _draw_image(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, list[dict]]:
    """One image and its objects ``{"category_id", "bbox", "area", "segmentation"}`` (polygons)."""
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    objects: list[dict] = []
    size = min(width, height)
    for _ in range(rng.integers(1, _MAX_SHAPES + 1)):
        for _ in range(_PLACEMENT_TRIES):
            category = int(rng.integers(len(SHAPE_CLASSES)))
            radius = rng.uniform(0.1, 0.22) * size
            cx, cy = rng.uniform(radius, [width - radius, height - radius])
            points = _polygon(rng, SHAPE_CLASSES[category], cx, cy, radius)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            if _disjoint(box, [obj["bbox"] for obj in objects]):
                break
        else:
            break
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.polygon(points, fill=colour, outline=tuple(255 - c for c in colour))
        objects.append(
            {
                "category_id": category + 1,
                "bbox": [round(v, 2) for v in box],
                "area": round(_polygon_area(points), 2),
                "segmentation": [[round(v, 2) for point in points for v in point]],
            }
        )
    return image, objects


def _write_split(
    rng: np.random.Generator, root: Path, split: str, count: int, size: int, aspect_ratios: tuple[float, ...]
) -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        # One ratio draws nothing, so square sets are the same with or without this option.
        ratio = (
            aspect_ratios[rng.integers(len(aspect_ratios))] if len(aspect_ratios) > 1 else aspect_ratios[0]
        )
        width = round(size * ratio)
        image, objects = _draw_image(rng, width, size)
        file_name = f"{image_id:06d}.png"
        image.save(root / split / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": size})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **obj})
    dataset = {
        "info": {"description": f"awconv synthetic shapes, {split} split", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": index + 1, "name": name, "supercategory": "shape"}
            for index, name in enumerate(SHAPE_CLASSES)
        ],
    }
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataset))
    return path


def make_shapes(
    out_dir: str | Path,
    *,
    images: int = 300,
    size: int = 96,
    seed: int = 0,
    val_fraction: float = 0.2,
    aspect_ratios: tuple[float, ...] = (1.0,),
) -> dict[str, tuple[Path, Path]]:
    """Writes a shapes detection and instance segmentation set in COCO format.

    Args:
        out_dir: the folder to write (created; existing files of the same names are replaced).
        images: images in both splits together (at least 2).
        size: image height in pixels (at least 32).
        seed: the random seed; the same arguments give the same files.
        val_fraction: the share of images in the validation split (at least one image each).
        aspect_ratios: width / height of each image, drawn uniformly from these (each in [0.5, 2]);
            the default makes square images.

    Returns:
        ``{"train": (images_dir, annotations_json), "val": (...)}``.
    """
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ValueError(f"images must be an int >= 2 (one per split at least), got {images!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an int >= 32 pixels, got {size!r}")
    if (
        not isinstance(aspect_ratios, (tuple, list))
        or not aspect_ratios
        or not all(isinstance(r, (int, float)) and 0.5 <= r <= 2 for r in aspect_ratios)
    ):
        raise ValueError(
            f"aspect_ratios must be a non-empty list of numbers in [0.5, 2], got {aspect_ratios!r}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    val_count = min(max(1, round(images * val_fraction)), images - 1)
    counts = {"train": images - val_count, "val": val_count}
    return {
        split: (root / split, _write_split(rng, root, split, count, size, tuple(aspect_ratios)))
        for split, count in counts.items()
    }
