"""The named values the engines accept for precision, optimiser, schedule, augmentation and recipes.

Plain constants, importable without torch or Lightning (``--auto-augment``'s and
``--interpolation``'s come from ``awconv.data.augment``, which imports torchvision only when it
builds a transform), so the command line can offer them as choices and print its help at once.
"""

from __future__ import annotations

from awconv.data.augment import AUTO_AUGMENT, INTERPOLATIONS

__all__ = [
    "AUTO_AUGMENT",
    "DETECTION_SCHEDULES",
    "INTERPOLATIONS",
    "OPTIMIZERS",
    "PRECISIONS",
    "RECIPES",
    "SCHEDULES",
]

# ``--precision`` -> Lightning's precision setting.
PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
OPTIMIZERS = ("sgd", "adamw", "lamb", "lars")
SCHEDULES = ("cosine", "step")
# ``awconv detect train --schedule``: the names of ``awconv.engine.detection.recipe.SCHEDULES``.
DETECTION_SCHEDULES = ("1x", "2x", "3x", "torchvision")
# ``--config NAME``: the recipes in awconv/engine/classification/recipes/.
RECIPES = ("torchvision-resnet", "timm-resnet-a3")
