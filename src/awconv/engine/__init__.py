"""Training engines on Lightning.

This package holds what both tasks share: the trainer and its run directory (``trainer.py``),
checkpoints (``checkpoint.py``), optimisers and schedules (``optim.py``), callbacks
(``history.py``, ``finite_loss.py``), statistics, plots, throughput, option parsing and the
allocator setting of the command line. ``classification/`` and ``detection/`` hold each task's
LightningModule, DataModule, runs and report.
"""
