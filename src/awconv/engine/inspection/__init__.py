"""Inspection of what the weight-shaped attention of AW layers learned (``awconv inspect``).

- ``statistics.py``: ``attention_statistics(model, loader)``, hooks on every AW layer.
- ``accumulator.py``: ``LayerAccumulator``, one layer's streaming sums.
- ``layer_statistics.py``: ``LayerStatistics`` and ``InspectionResult``, the plain results.
- ``plots.py``: the figures of those statistics.
- ``report.py``: ``write_inspection_report``, ``report.md`` / ``report.html`` with the figures.
- ``run.py``: ``inspect_classifier``, a registered model with weights on a data set's validation split.
"""

from awconv.engine.inspection.layer_statistics import InspectionResult, LayerStatistics
from awconv.engine.inspection.statistics import attention_statistics

__all__ = ["InspectionResult", "LayerStatistics", "attention_statistics"]
