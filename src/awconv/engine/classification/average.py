"""``average_checkpoints``: the mean of a run's best checkpoints' weights, evaluated (``awconv average``).

timm's ``avg_checkpoints.py`` idea on a run of ``--keep-top K``: the top checkpoints in
``RUN/checkpoints/top/`` are ranked by the validation top-1 that ``history.json`` records for their
epochs, the best ``top`` of them are averaged (floating-point tensors as their mean, computed in
float64; integer buffers such as BatchNorm's ``num_batches_tracked`` from the best checkpoint),
written to ``RUN/average-top<K>.safetensors`` and evaluated as the run was trained; the weights'
metrics and epochs go to ``RUN/average-top<K>.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from awconv.engine.checkpoint import AtomicCheckpointIO, export_safetensors, load_state_dict
from awconv.engine.history import read_history
from awconv.engine.trainer import write_json

__all__ = ["average_checkpoints", "average_state_dicts", "ranked_top_checkpoints"]


def ranked_top_checkpoints(run_dir: str | Path) -> list[tuple[Path, int, float]]:
    """``(path, epoch, val_top1)`` of the run's ``checkpoints/top/*.ckpt``, the best first.

    Raises:
        FileNotFoundError: the run kept no top checkpoints (it was trained without ``--keep-top``).
    """
    run_dir = Path(run_dir)
    paths = sorted((run_dir / "checkpoints" / "top").glob("*.ckpt"))
    if not paths:
        raise FileNotFoundError(
            f"run '{run_dir}' holds no checkpoints/top/*.ckpt: train it with --keep-top K to average"
        )
    top1 = {int(row["epoch"]): float(row["val_top1"]) for row in read_history(run_dir / "history.json")}
    io = AtomicCheckpointIO()
    ranked = []
    for path in paths:
        epoch = int(io.load_checkpoint(path)["epoch"]) + 1  # Lightning counts epochs from 0, history from 1
        ranked.append((path, epoch, top1[epoch]))
    return sorted(ranked, key=lambda item: (-item[2], item[1]))


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of floating-point tensors (in float64, cast back); other tensors from ``states[0]``."""
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean = torch.stack([state[key].double() for state in states]).mean(0)
            averaged[key] = mean.to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


def average_checkpoints(run_dir: str | Path, *, top: int | None = None, **evaluate: Any) -> dict[str, Any]:
    """Averages the run's ``top`` best kept checkpoints (default all), writes and evaluates the weights.

    Args:
        run_dir: a run trained with ``--keep-top``.
        top: how many of the best kept checkpoints to average.
        **evaluate: passed to ``evaluate_classifier`` (``workers``, ``accelerator``, ``batch_size``...).

    Returns:
        ``{"weights": path, "epochs": [...], "val_top1": ..., "val_loss": ..., ...}`` as written to
        ``average-top<K>.json``.

    Raises:
        ValueError: ``top`` is not a positive int or exceeds the checkpoints kept.
    """
    from awconv.engine.classification.run import evaluate_classifier

    run_dir = Path(run_dir)
    ranked = ranked_top_checkpoints(run_dir)
    top = len(ranked) if top is None else top
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= len(ranked):
        raise ValueError(f"--top must be an int in [1, {len(ranked)}] (the checkpoints kept), got {top!r}")
    chosen = ranked[:top]
    weights = run_dir / f"average-top{top}.safetensors"
    export_safetensors(average_state_dicts([load_state_dict(path) for path, _, _ in chosen]), weights)
    metrics = evaluate_classifier(None, str(weights), None, run_dir=str(run_dir), **evaluate)
    result = {
        "weights": weights.name,
        "epochs": [epoch for _, epoch, _ in chosen],
        "epochs_val_top1": [score for _, _, score in chosen],
        **metrics,
    }
    write_json(run_dir / f"average-top{top}.json", result)
    return result
