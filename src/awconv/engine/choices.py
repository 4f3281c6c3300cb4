"""The named values the engines accept for precision, optimiser and schedule.

Plain constants, importable without torch or Lightning, so the command line can offer them as
choices and print its help at once.
"""

from __future__ import annotations

__all__ = ["DETECTION_SCHEDULES", "OPTIMIZERS", "PRECISIONS", "SCHEDULES"]

# ``--precision`` -> Lightning's precision setting.
PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
# ``awconv detect train --schedule``: the names of ``awconv.engine.detection.recipe.SCHEDULES``.
DETECTION_SCHEDULES = ("1x", "2x", "3x", "torchvision")
