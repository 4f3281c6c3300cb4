"""Training engines on Lightning.

This package holds what both tasks share: the trainer and its run directory (``trainer.py``), the
run's saved configuration and the resume check (``run_config.py``), checkpoints
(``checkpoint.py``), training loaders that a resumed run replays (``loaders.py``), optimisers and
schedules (``optim.py``), callbacks (``history.py``, ``finite_loss.py``, ``random_state.py``),
statistics, plots, throughput, option parsing, the named choices the command line offers
(``choices.py``) and the allocator setting of the command line. ``classification/`` and
``detection/`` hold each task's LightningModule, DataModule, runs and report.
"""
