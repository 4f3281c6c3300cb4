"""Image classification on Lightning: what ``awconv train``, ``eval`` and ``compare`` run.

- ``module.py``: ``ClassifierModule`` (any registered model, cross-entropy, top-1/top-5).
- ``datamodule.py``: ``ClassificationDataModule`` (the loaders of ``awconv.data.classification``).
- ``config.py``: ``TrainConfig``, checked when made, and its saved form.
- ``run.py``: ``train_classifier`` and ``evaluate_classifier``.
- ``compare.py``: ``compare_classifiers`` (models x seeds) and its ``report.py``.
- ``mixing.py``: Mixup/CutMix batches; ``recipe_file.py``: ``--config`` files and shipped recipes.
- ``average.py``: ``average_checkpoints`` of a run's kept best checkpoints.
"""

from awconv.engine.classification.compare import compare_classifiers, parse_model_spec
from awconv.engine.classification.datamodule import ClassificationDataModule
from awconv.engine.classification.module import ClassifierModule, create_classifier
from awconv.engine.classification.run import TrainConfig, evaluate_classifier, train_classifier

__all__ = [
    "ClassificationDataModule",
    "ClassifierModule",
    "TrainConfig",
    "compare_classifiers",
    "create_classifier",
    "evaluate_classifier",
    "parse_model_spec",
    "train_classifier",
]
