"""COCO evaluation: the twelve figures and per-class AP equal pycocotools' COCOeval run on the json itself,
for boxes and masks, whatever the category ids; each image counts once, in any order, repeated or not."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import MeanAveragePrecision

from awconv.data.coco import coco_detection
from awconv.data.shapes import make_shapes
from awconv.engine.detection.metrics import METRIC_NAMES, CocoMeanAveragePrecision, summarize_coco


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """A shapes set with category ids 9, 0, 4 and noisy predictions of it, as labels and as COCO results."""
    images_dir, annotations = make_shapes(tmp_path_factory.mktemp("shapes"), images=9, size=48, seed=2)[
        "train"
    ]
    data = json.loads(annotations.read_text())
    new_ids = {1: 9, 2: 0, 3: 4}
    for entry in data["annotations"] + data["categories"]:
        key = "category_id" if "category_id" in entry else "id"
        entry[key] = new_ids[entry[key]]
    annotations.write_text(json.dumps(data))
    dataset = coco_detection(images_dir, annotations, train=False, masks=True)
    category_ids = list(dataset.categories)
    assert category_ids == [0, 4, 9]
    generator = torch.Generator().manual_seed(0)
    samples = []
    for index in range(len(dataset)):
        _, target = dataset[index]
        boxes = target["boxes"].as_subclass(torch.Tensor)
        count = len(boxes)
        jitter = torch.randn(count, 4, generator=generator) * 1.0
        false_positive = torch.tensor([[2.0, 2.0, 20.0, 22.0]])
        labels = target["labels"].clone()
        labels[torch.rand(count, generator=generator) < 0.25] = 1 + (labels[0] % 3)  # some wrong classes
        masks = torch.cat([target["masks"].bool().roll(1, dims=-1), torch.zeros(1, 48, 48, dtype=torch.bool)])
        masks[-1, 2:22, 2:20] = True
        prediction = {
            "boxes": torch.cat([boxes + jitter, false_positive]).clamp(0, 48),
            "scores": torch.rand(count + 1, generator=generator),
            "labels": torch.cat([labels, torch.tensor([2])]),
            "masks": masks,
        }
        truth = {key: target[key].as_subclass(torch.Tensor) for key in ("boxes", "labels", "iscrowd", "area")}
        truth["masks"] = target["masks"].bool()
        samples.append((prediction, {**truth, "image_id": target["image_id"]}))
    return annotations, category_ids, [name for name in dataset.categories.values()], samples


def _coco_results(samples, category_ids) -> list[dict]:
    results = []
    for prediction, truth in samples:
        for box, label, score, mask in zip(
            *(prediction[k] for k in ("boxes", "labels", "scores", "masks")), strict=True
        ):
            x0, y0, x1, y1 = box.tolist()
            rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append(
                {
                    "image_id": truth["image_id"],
                    "category_id": category_ids[int(label) - 1],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                    "segmentation": rle,
                }
            )
    return results


def _cocoeval(annotations, results, iou_type):
    """pycocotools on the json itself: the 12 stats and AP per category (area all, 100 detections)."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        evaluation = COCOeval(truth, truth.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = [float(np.mean(p[p > -1])) for p in np.moveaxis(precision, 2, 0)]
    return evaluation.stats.tolist(), dict(zip(evaluation.params.catIds, per_class, strict=True))


def _ours(samples, names, order=None):
    metric = CocoMeanAveragePrecision(masks=True)
    for index in order if order is not None else range(len(samples)):
        prediction, truth = samples[index]
        metric.update([prediction], [truth])
    return summarize_coco(metric.compute(), names, masks=True)


def test_figures_equal_cocoeval_on_the_json_for_boxes_and_masks(evaluation) -> None:
    annotations, category_ids, names, samples = evaluation
    ours = _ours(samples, names)
    results = _coco_results(samples, category_ids)
    for iou_type, prefix in (("bbox", ""), ("segm", "mask_")):
        stats, per_class = _cocoeval(annotations, results, iou_type)
        assert 0.2 < stats[0] < 0.9, stats  # a case where mistakes matter
        assert [ours[prefix + name] for name in METRIC_NAMES.values()] == pytest.approx(
            stats, abs=1e-6
        )  # float32 results
        expected = {name: per_class[cat_id] for cat_id, name in zip(category_ids, names, strict=True)}
        assert ours[prefix + "AP_per_class"] == pytest.approx(expected, abs=1e-6)  # float32 results


def test_each_image_counts_once_in_any_order_as_under_ddp_padding(evaluation) -> None:
    _, _, names, samples = evaluation
    once = _ours(samples, names)
    # DistributedSampler pads two shards of 7 images by repeating the first; gathered, torchmetrics
    # interleaves the shards.
    padded = [0, 1, 2, 3, 4, 5, 6, 0]
    gathered = padded[0::2] + padded[1::2]
    assert _ours(samples, names, order=gathered) == once
    plain = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")
    for index in gathered:
        plain.update([samples[index][0]], [{k: v for k, v in samples[index][1].items() if k != "image_id"}])
    assert float(plain.compute()["map"]) != pytest.approx(once["AP"], abs=1e-6)  # counted twice, it differs
