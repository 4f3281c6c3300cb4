"""Predictions as data: COCO results in ``predictions.json`` and, optionally, drawn images.

The results format is the one COCOeval's ``loadRes``, Detectron and mmdetection read and write: a
list of ``{"image_id", "category_id", "bbox": [x, y, width, height], "score"}``, with
``"segmentation"`` (an RLE whose ``counts`` is a string) for mask detectors. Category ids are the
json's (the checkpoint's ``categories`` map labels back to them); image ids are the json's when the
images come from one, else the images' paths relative to the folder they share. Each detection the
model returns is written (torchvision keeps those scoring at least ``box_score_thresh``, 0.05);
drawings show those scoring at least ``score_thresh``, under names that mirror the images' paths,
so two images called ``x.png`` in different folders draw to different files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from awconv.data.coco import collate_detection
from awconv.engine.checkpoint import atomic_write

__all__ = [
    "ImageFile",
    "coco_image_files",
    "coco_results",
    "draw_predictions",
    "path_image_files",
    "predict_images",
]


class ImageFile(NamedTuple):
    """An image to predict: its file, its id in the results, and the relative name of its drawing."""

    path: Path
    image_id: int | str
    name: str


def coco_image_files(
    images_dir: str | Path,
    annotations: str | Path,
    *,
    only: Sequence[str | Path] = (),
    limit: int | None = None,
) -> list[ImageFile]:
    """The images a COCO json lists (``images`` entries, in id order), found through their ``file_name``.

    Args:
        images_dir: the folder ``file_name`` is relative to (sub-folders allowed).
        annotations: a COCO json with an ``images`` list (annotations are not needed: test-dev's
            image-info files work).
        only: keep these image files, which the json must list; empty keeps all.
        limit: keep at most this many (after ``only``).
    """
    images_dir, annotations = Path(images_dir), Path(annotations)
    try:
        entries = json.loads(annotations.read_text())["images"]
        listed = sorted((entry["id"], entry["file_name"]) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{annotations} must be a COCO json with 'images' entries holding 'id' and 'file_name': "
            f"{type(error).__name__} {error}"
        ) from None
    files = [
        ImageFile(images_dir / name, image_id, str(Path(name).with_suffix(""))) for image_id, name in listed
    ]
    if only:
        by_path = {file.path.resolve(): file for file in files}
        unknown = [str(p) for p in only if Path(p).resolve() not in by_path]
        if unknown:
            raise ValueError(f"image {unknown[0]} is not listed in {annotations} (under {images_dir})")
        files = list(dict.fromkeys(by_path[Path(p).resolve()] for p in only))
    missing = [str(file.path) for file in files if not file.path.is_file()]
    if missing:
        raise FileNotFoundError(f"image file {missing[0]} listed in {annotations} does not exist")
    return files[:limit]


def path_image_files(paths: Sequence[str | Path]) -> list[ImageFile]:
    """Image files given by path: id and drawing name are the path relative to the folder they share."""
    resolved = list(dict.fromkeys(Path(p).resolve() for p in paths))
    if not resolved:
        raise ValueError("no images: give image files, or --data coco:IMAGES_DIR,JSON")
    missing = [str(p) for p in resolved if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"image file {missing[0]} does not exist")
    root = Path(os.path.commonpath([p.parent for p in resolved]))
    return [
        ImageFile(p, str(p.relative_to(root)), str(p.relative_to(root).with_suffix(""))) for p in resolved
    ]


class _Images(Dataset):
    """``(image (3, H, W) float in [0, 1], {"image_id", "name"})`` per ``ImageFile``."""

    def __init__(self, files: Sequence[ImageFile]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        file = self.files[index]
        image = decode_image(str(file.path), mode=ImageReadMode.RGB)
        return image.float() / 255, {"image_id": file.image_id, "name": file.name}


def coco_results(
    detection: Mapping[str, Tensor], image_id: int | str, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """One image's detections in COCO results format.

    Args:
        detection: ``boxes`` (K, 4) XYXY, ``labels`` (K,) in 1..len(category_ids), ``scores`` (K,)
            and optionally ``masks`` (K, H, W) bool.
        image_id: the image's id in the results.
        category_ids: the category id of every label, label 1 first.
    """
    boxes = box_convert(detection["boxes"].float(), "xyxy", "xywh").tolist()
    results = [
        {
            "image_id": image_id,
            "category_id": category_ids[int(label) - 1],
            "bbox": box,
            "score": float(score),
        }
        for box, label, score in zip(boxes, detection["labels"], detection["scores"], strict=True)
    ]
    if "masks" in detection:
        masks = np.asfortranarray(detection["masks"].numpy().astype(np.uint8).transpose(1, 2, 0))
        for result, rle in zip(results, mask_utils.encode(masks), strict=True):
            result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return results


def draw_predictions(
    image: Tensor, prediction: Mapping[str, Tensor], names: Sequence[str], score_thresh: float = 0.5
) -> Tensor:
    """Draws masks (if any) and boxes with ``name score`` labels.

    Args:
        image: (3, H, W) float in [0, 1] or uint8.
        prediction: ``boxes`` (K, 4) XYXY, ``labels`` (K,), ``scores`` (K,), optionally ``masks``
            (K, H, W) bool.
        names: the name of every label, label 1 first.
        score_thresh: detections scoring below are not drawn.

    Returns:
        (3, H, W) uint8.
    """
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).to(torch.uint8)
    keep = prediction["scores"] >= score_thresh
    if not keep.any():
        return image
    if "masks" in prediction:
        image = draw_segmentation_masks(image, prediction["masks"][keep], alpha=0.45)
    labels = [
        f"{names[int(label) - 1]} {float(score):.2f}"
        for label, score in zip(prediction["labels"][keep], prediction["scores"][keep], strict=True)
    ]
    return draw_bounding_boxes(
        image, prediction["boxes"][keep].detach().float(), labels, colors="red", width=2
    )


class _CocoResultsWriter(BasePredictionWriter):
    """Collects each batch's detections as COCO results and draws them; writes the json at the end."""

    def __init__(
        self,
        out_file: Path,
        category_ids: Sequence[int],
        names: Sequence[str],
        draw_dir: Path | None,
        score_thresh: float,
    ) -> None:
        super().__init__(write_interval="batch")
        self.out_file, self.category_ids, self.names = out_file, list(category_ids), list(names)
        self.draw_dir, self.score_thresh = draw_dir, score_thresh
        self.results: list[dict[str, Any]] = []
        self.drawn: list[Path] = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[dict[str, Tensor]],
        batch_indices: Sequence[int] | None,
        batch: tuple[list[Tensor], list[dict[str, Any]]],
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        images, items = batch
        for image, item, detection in zip(images, items, prediction, strict=True):
            self.results += coco_results(detection, item["image_id"], self.category_ids)
            if self.draw_dir is not None:
                target = self.draw_dir / f"{item['name']}_pred.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                drawn = draw_predictions(image.cpu(), detection, self.names, self.score_thresh)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(target)
                self.drawn.append(target)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        text = json.dumps(self.results).encode()
        atomic_write(self.out_file, lambda file: file.write(text))


def predict_images(
    module: pl.LightningModule,
    files: Sequence[ImageFile],
    out_file: str | Path,
    *,
    draw_dir: str | Path | None = None,
    score_thresh: float = 0.5,
    accelerator: str = "auto",
    workers: int = 0,
) -> list[Path]:
    """Runs a ``DetectorModule`` on image files; writes ``out_file`` (COCO results) and drawings.

    Args:
        module: a trained ``DetectorModule`` (``load_detector``).
        files: the images (``coco_image_files`` or ``path_image_files``).
        out_file: the COCO results json to write.
        draw_dir: draw the detections into ``draw_dir/<name>_pred.png``; ``None`` draws nothing.
        score_thresh: the score a detection needs to be drawn.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``...; one device, one image per step.
        workers: image-loading worker processes.

    Returns:
        The drawn files.
    """
    writer = _CocoResultsWriter(
        Path(out_file),
        module.category_ids,
        module.category_names,
        Path(draw_dir) if draw_dir is not None else None,
        score_thresh,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(_Images(files), batch_size=1, num_workers=workers, collate_fn=collate_detection)
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    return writer.drawn
