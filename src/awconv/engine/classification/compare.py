"""``compare_classifiers``: models x seeds with one recipe on one data set, then the report.

Each run lives in ``out_dir/runs/<model>/seed<k>/`` (a run directory of ``train_classifier``).
A run with a ``metrics.json`` is reused, one with only ``checkpoints/last.ckpt`` is resumed, so an
interrupted comparison continues where it stopped. A run directory trained with another recipe is
an error (``awconv.engine.run_config.check_resumable``) rather than being mixed into the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from awconv.data.classification import ClassificationData, build_classification_data
from awconv.engine.classification.config import OPTIONS, RESUME_MAY_CHANGE, augmentation, saved_config
from awconv.engine.classification.module import create_classifier
from awconv.engine.classification.report import (
    ModelResult,
    check_pairs,
    format_paired_table,
    format_table,
    write_report,
)
from awconv.engine.classification.run import TrainConfig, train_classifier
from awconv.engine.history import read_history
from awconv.engine.machine import describe_machine
from awconv.engine.options import parse_key_values
from awconv.engine.run_config import check_resumable
from awconv.engine.throughput import measure_throughput, measure_training_throughput
from awconv.engine.trainer import last_checkpoint
from awconv.profiling import profile_model

__all__ = ["compare_classifiers", "parse_model_spec"]

_logger = logging.getLogger(__name__)


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` -> ``(name, kwargs)``.

    Commas inside brackets belong to the value: ``"aw_resnet20_cifar:aw_stages=[2,3],rank=4"``.
    """
    name, _, args = spec.partition(":")
    items = filter(None, re.split(r",(?![^\[]*\])", args))
    return name, parse_key_values(items, f"model '{spec}' (name:key=value,...)")


def compare_classifiers(
    models: Sequence[str],
    seeds: Sequence[int],
    recipe: TrainConfig,
    out_dir: str | Path,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> tuple[list[ModelResult], Path]:
    """Trains every model with every seed and writes the report; returns the results and ``report.md``.

    Args:
        models: model specs (``parse_model_spec``); ``recipe.model``/``model_kwargs`` are ignored.
        seeds: seeds, one run per model and seed.
        recipe: the training configuration shared by every run.
        out_dir: the comparison's directory.
        pairs: ``(model, baseline)`` specs from ``models`` to compare seed by seed; None: every
            model against the first.
    """
    if not models or not seeds:
        raise ValueError(
            f"need at least one model and one seed, got models={list(models)}, seeds={list(seeds)}"
        )
    if len(set(models)) != len(models) or len(set(seeds)) != len(seeds):
        raise ValueError(f"models and seeds must not repeat, got models={list(models)}, seeds={list(seeds)}")
    # Checked here, before hours of training, as well as when the report is written.
    pairs = check_pairs([(m, models[0]) for m in models[1:]] if pairs is None else pairs, models)
    out_dir = Path(out_dir)
    specs = [parse_model_spec(m) for m in models]
    data = build_classification_data(
        recipe.data, image_size=recipe.image_size, augmentation=augmentation(recipe)
    )
    recipe = dataclasses.replace(recipe, image_size=data.image_size)
    shape = (data.in_chans, data.image_size, data.image_size)
    for name, kwargs in specs:  # fail fast on a bad name or argument, before hours of training
        create_classifier(name, num_classes=data.num_classes, in_chans=data.in_chans, model_kwargs=kwargs)
    results = []
    for spec, (name, kwargs) in zip(models, specs, strict=True):
        result = ModelResult(
            label=spec, params=0, gmacs=0.0, images_per_second=0.0, train_images_per_second=0.0
        )
        for seed in seeds:
            run_dir = out_dir / "runs" / re.sub(r"[^\w.=,-]+", "_", spec) / f"seed{seed}"
            config = dataclasses.replace(
                recipe, model=name, model_kwargs=kwargs, seed=seed, run_dir=str(run_dir)
            )
            summary = _run(config, data)
            result.runs.append({**summary, "run_dir": str(run_dir)})
            result.histories.append(read_history(run_dir / "history.json"))
        size = {"num_classes": data.num_classes, "in_chans": data.in_chans}
        profile = profile_model(name, img_size=data.image_size, **size, **kwargs)
        result.params, result.gmacs = profile.params, profile.macs / 1e9
        network = create_classifier(name, model_kwargs=kwargs, **size)
        result.images_per_second = measure_throughput(network, shape, batch_size=recipe.batch_size)
        result.train_images_per_second = measure_training_throughput(
            network, shape, num_classes=data.num_classes, batch_size=recipe.batch_size
        )
        results.append(result)
    recipe_text = (
        f"{recipe.data} at {data.image_size} px, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"{recipe.optimizer} lr {recipe.lr} wd {recipe.weight_decay}, {recipe.schedule} schedule"
        f"{f', warm-up {recipe.warmup_epochs} epochs' if recipe.warmup_epochs else ''}"
        f"{f', label smoothing {recipe.label_smoothing}' if recipe.label_smoothing else ''}"
        f"{_toolbox_text(recipe)}, seeds {', '.join(map(str, seeds))}"
    )
    title = f"{', '.join(models)} on {recipe.data}"
    machine = describe_machine(torch.device("cpu"))
    report = write_report(results, out_dir, title=title, recipe=recipe_text, machine=machine, pairs=pairs)
    print(format_table(results))
    if pairs:
        print(format_paired_table(results, pairs))
    return results, report


def _toolbox_text(recipe: TrainConfig) -> str:
    """The recipe-toolbox options that differ from their defaults, for the report's recipe line."""
    defaults = TrainConfig(model="", data="", run_dir="")
    names = (
        "betas",
        "layer_decay",
        "min_lr",
        "warmup_lr",
        "grad_accum",
        "ema",
        "mixup",
        "cutmix",
        "auto_augment",
        "random_erase",
        "val_crop_pct",
        "interpolation",
    )
    changed = [
        f"{name.replace('_', '-')} {getattr(recipe, name)}"
        for name in names
        if getattr(recipe, name) != getattr(defaults, name)
    ]
    return "".join(f", {text}" for text in changed)


def _run(config: TrainConfig, data: ClassificationData) -> dict[str, Any]:
    """Reuses a finished run, resumes an interrupted one, or trains a new one."""
    run_dir = Path(config.run_dir)
    wanted = saved_config(config, image_size=data.image_size)
    compared = {k: v for k, v in wanted.items() if k not in ("run_dir", "resume")}
    # Unlike `train --resume`, the epochs must match too: a finished run is reused as it is.
    may_change = [field for field in RESUME_MAY_CHANGE if field != "epochs"]
    check_resumable(run_dir, compared, may_change=may_change, options=OPTIONS)
    if (run_dir / "config.json").is_file() and (run_dir / "metrics.json").is_file():
        _logger.info("reusing finished run %s", run_dir)
        return json.loads((run_dir / "metrics.json").read_text())
    resume = "last" if last_checkpoint(run_dir) else None
    _logger.info("%s %s", "resuming" if resume else "training", run_dir)
    return train_classifier(dataclasses.replace(config, resume=resume), data=data)
