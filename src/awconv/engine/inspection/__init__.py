"""Inspection of what the weight-shaped attention of AW layers learned (``awconv inspect``).

- ``statistics.py``: ``attention_statistics(model, loader)``, streaming statistics per AW layer.
- ``plots.py``: the figures of those statistics.
- ``report.py``: ``write_inspection_report``, ``report.md`` / ``report.html`` with the figures.
- ``run.py``: ``inspect_classifier``, a registered model with weights on a data set's validation split.
"""

from awconv.engine.inspection.statistics import InspectionResult, LayerStatistics, attention_statistics

__all__ = ["InspectionResult", "LayerStatistics", "attention_statistics"]
