"""``TrainConfig``: everything that defines a classification run, checked once when it is made.

A bad value is a one-line ``ValueError`` naming the command-line option (``--lr must be a
positive number, got -1.0``), before any data is read or Lightning starts. ``saved_config`` is
the form written to ``config.json``: the data directory and pretrained weights as absolute paths,
the run directory as ``"."`` (the directory holding the file), so the run can move.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from awconv.data.augment import Augmentation, check_augmentation
from awconv.data.classification import resolve_data_spec
from awconv.engine.choices import OPTIMIZERS, PRECISIONS, SCHEDULES
from awconv.engine.run_config import portable_path

__all__ = ["OPTIONS", "RESUME_MAY_CHANGE", "TrainConfig", "augmentation", "saved_config"]

# Fields a resumed run may change; every other saved field must stay as it was.
RESUME_MAY_CHANGE = ("epochs", "workers", "devices", "num_nodes", "accelerator", "progress_bar")

# Fields whose command-line option is not ``--field-name``.
OPTIONS = {"model": "MODEL", "model_kwargs": "--model-arg", "progress_bar": "--no-progress"}


@dataclass
class TrainConfig:
    """Everything that defines a classification run; saved as ``config.json`` in the run directory.

    ``deterministic``: ``torch.use_deterministic_algorithms(True)`` through Lightning, so runs with
    the same seed on the same hardware give equal weights. ``resume``: ``None`` starts afresh,
    ``"last"`` continues from ``run_dir``'s last checkpoint, any other value is a checkpoint path.

    Raises:
        ValueError: a field out of range, naming its command-line option.
    """

    model: str
    data: str
    run_dir: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    epochs: int = 90
    batch_size: int = 128
    image_size: int | None = None
    workers: int = 4
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    grad_accum: int = 1
    betas: list[float] | None = None
    layer_decay: float | None = None
    min_lr: float = 0.0
    warmup_lr: float = 0.0
    ema: float | None = None
    ema_warmup: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_switch_prob: float = 0.5
    auto_augment: str | None = None
    random_erase: float = 0.0
    val_crop_pct: float | None = None
    interpolation: str = "bilinear"
    keep_top: int = 0
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
    seed: int = 0
    deterministic: bool = False
    resume: str | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "devices", "num_nodes", "step_epochs", "grad_accum"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("workers", self.workers, low=0)
        _check_int("keep_top", self.keep_top, low=0)
        _check_int("seed", self.seed, low=0, high=2**32 - 1)
        if self.image_size is not None:
            _check_int("image_size", self.image_size, low=1)
        _check_number("lr", self.lr, positive=True)
        _check_number("gamma", self.gamma, positive=True)
        for name in ("momentum", "weight_decay", "warmup_epochs", "label_smoothing", "mixup", "cutmix"):
            _check_number(name, getattr(self, name))
        for name in ("min_lr", "warmup_lr"):
            _check_number(name, getattr(self, name))
            if getattr(self, name) >= self.lr:
                raise ValueError(f"{_option(name)} must be below --lr {self.lr}, got {getattr(self, name)}")
        for name in ("mixup_switch_prob", "random_erase"):
            _check_fraction(name, getattr(self, name))
        for name in ("layer_decay", "val_crop_pct"):
            if getattr(self, name) is not None:
                _check_fraction(name, getattr(self, name), positive=True)
        if self.ema is not None and not (_is_number(self.ema) and 0 < self.ema < 1):
            raise ValueError(f"--ema must be a decay in (0, 1), such as 0.9998, got {self.ema!r}")
        if self.betas is not None:
            betas = self.betas
            good = isinstance(betas, (list, tuple)) and len(betas) == 2
            if not good or not all(_is_number(b) and 0 <= b < 1 for b in betas):
                raise ValueError(f"--betas must be two numbers in [0, 1), such as 0.9 0.999, got {betas!r}")
            self.betas = [float(b) for b in betas]
        check_augmentation(self.auto_augment, self.interpolation)
        if self.clip_grad is not None:
            _check_number("clip_grad", self.clip_grad, positive=True)
        if self.label_smoothing >= 1:
            raise ValueError(f"--label-smoothing must be below 1, got {self.label_smoothing}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"--warmup-epochs {self.warmup_epochs} is longer than the run (--epochs {self.epochs}): "
                "the learning rate would never reach its peak nor decay; shorten the warm-up"
            )
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"--{name} must be one of {sorted(choices)}, got {getattr(self, name)!r}")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"--model-arg must give a dict of keyword arguments, got {self.model_kwargs!r}")


def augmentation(config: TrainConfig) -> Augmentation:
    """The data augmentation ``config`` adds to its data set's own."""
    return Augmentation(
        auto_augment=config.auto_augment,
        random_erase=config.random_erase,
        val_crop_pct=config.val_crop_pct,
        interpolation=config.interpolation,
    )


def saved_config(config: TrainConfig, *, image_size: int) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it: portable paths and the resolved image size."""
    values = dataclasses.asdict(config)
    resume = config.resume
    values.update(
        data=resolve_data_spec(config.data),
        pretrained=portable_path(config.pretrained, config.run_dir),
        run_dir=".",
        image_size=image_size,
        resume=resume if resume in (None, "last") else portable_path(resume, config.run_dir),
    )
    return values


def _option(name: str) -> str:
    return OPTIONS.get(name, "--" + name.replace("_", "-"))


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
        expected = (
            f"an int in [{low}, {high}]" if high else ("a positive int" if low == 1 else f"an int >= {low}")
        )
        raise ValueError(f"{_option(name)} must be {expected}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fraction(name: str, value: Any, *, positive: bool = False) -> None:
    """``value`` in [0, 1], or (0, 1] when ``positive``."""
    if not _is_number(value) or value > 1 or value < 0 or (positive and value == 0):
        expected = "a number in (0, 1]" if positive else "a probability in [0, 1]"
        raise ValueError(f"{_option(name)} must be {expected}, got {value!r}")


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    number = _is_number(value)
    if not number or value < 0 or (positive and value == 0):
        expected = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{_option(name)} must be {expected}, got {value!r}")
