"""Object detection on Lightning: what ``awconv detect train``, ``eval``, ``predict`` and ``report`` run.

- ``module.py``: ``DetectorModule`` (a registered detector, the 1x recipe, COCO box mAP).
- ``datamodule.py``: ``DetectionDataModule`` (the COCO-format sets of ``awconv.data.coco``).
- ``run.py``: ``DetectionConfig``, ``train_detector``, ``evaluate_detector`` and ``load_detector``.
- ``report.py``: mAP tables, statistics over seeds and drawn predictions.

The detectors themselves are assembled in ``awconv.detection``.
"""

from awconv.engine.detection.datamodule import DetectionDataModule
from awconv.engine.detection.module import METRIC_NAMES, DetectorModule
from awconv.engine.detection.run import DetectionConfig, evaluate_detector, load_detector, train_detector

__all__ = [
    "METRIC_NAMES",
    "DetectionConfig",
    "DetectionDataModule",
    "DetectorModule",
    "evaluate_detector",
    "load_detector",
    "train_detector",
]
