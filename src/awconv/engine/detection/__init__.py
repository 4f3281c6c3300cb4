"""Object detection on Lightning: what ``awconv detect train``, ``eval``, ``predict`` and ``report`` run.

- ``module.py``: ``DetectorModule`` (a registered Faster or Mask R-CNN, the schedule, COCOeval).
- ``datamodule.py``: ``DetectionDataModule`` (the COCO-format sets of ``awconv.data.coco``, sharded).
- ``sampler.py``: aspect-ratio grouping of training batches, as torchvision's references.
- ``recipe.py``: the named schedules (1x, 2x, 3x, torchvision), parameter groups, the lr curve.
- ``metrics.py``: COCOeval's twelve figures and per-class AP, each image counted once under DDP.
- ``predict.py``: predictions as COCO results (``predictions.json``) and drawn images.
- ``run.py``: ``DetectionConfig``, ``train_detector``, ``evaluate_detector``, ``predict_detector``
  and ``load_detector``.
- ``report.py``: COCOeval tables, statistics over seeds, the Markdown report.

The detectors themselves are assembled in ``awconv.detection``.
"""

from awconv.engine.detection.datamodule import DetectionDataModule
from awconv.engine.detection.metrics import METRIC_NAMES, CocoMeanAveragePrecision
from awconv.engine.detection.module import DetectorModule
from awconv.engine.detection.run import (
    DetectionConfig,
    evaluate_detector,
    load_detector,
    predict_detector,
    train_detector,
)

__all__ = [
    "METRIC_NAMES",
    "CocoMeanAveragePrecision",
    "DetectionConfig",
    "DetectionDataModule",
    "DetectorModule",
    "evaluate_detector",
    "load_detector",
    "predict_detector",
    "train_detector",
]
