"""Matplotlib figures of a run: loss and accuracy per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_training_curves"]


def plot_training_curves(history: Sequence[dict[str, float]], path: str | Path, *, title: str) -> None:
    """Two panels, loss and top-1 accuracy (%) against epoch, for training and validation.

    Args:
        history: ``EpochHistory`` rows (``epoch``, ``{train,val}_loss``, ``{train,val}_top1``).
        path: the image file to write (``.png``, ``.svg``...).
        title: the figure title, e.g. the model and recipe.
    """
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split, style in (("train", "-o"), ("val", "-s")):
        if all(f"{split}_loss" in row for row in history):
            loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
        if all(f"{split}_top1" in row for row in history):
            acc_ax.plot(epochs, [100 * row[f"{split}_top1"] for row in history], style, label=split)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss (nats)", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
