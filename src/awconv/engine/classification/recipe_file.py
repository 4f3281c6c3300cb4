"""``--config FILE|NAME``: a run's options read from a YAML or JSON file, or a recipe shipped here.

A file holds ``TrainConfig`` fields under their ``config.json`` names (``lr``, ``weight_decay``,
``auto_augment``...), so a run's own ``config.json`` is a valid file: ``awconv train --config
runs/x/config.json --out runs/y`` trains the same run again. What ``config.json`` records about the
run rather than sets (``num_classes``, ``versions``...) is ignored, and so are its ``run_dir`` and
``resume``; a relative ``pretrained`` path is read from the file's folder. Any other key is a
one-line error naming the file, the key and the closest field.

``RECIPES`` are YAML files in ``awconv/engine/classification/recipes/``, each naming its source.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from awconv.engine.choices import RECIPES
from awconv.engine.classification.config import TrainConfig

__all__ = ["RECIPES", "read_config_file"]

# What config.json records about a run without setting it, and where the run lives and resumes from.
_RUN_FACTS = (
    "num_classes",
    "in_chans",
    "train_size",
    "val_size",
    "world_size",
    "versions",
    "run_dir",
    "resume",
)


def read_config_file(source: str) -> dict[str, Any]:
    """The ``TrainConfig`` fields set by a YAML/JSON file, or by the shipped recipe named ``source``.

    Raises:
        FileNotFoundError: ``source`` is neither a file nor a recipe name.
        ValueError: the file is not a mapping, cannot be parsed, or holds an unknown key.
    """
    path = Path(source).expanduser()
    if path.is_file():
        text, folder = path.read_text(), path.parent
    elif source in RECIPES:
        text = resources.files("awconv.engine.classification").joinpath(f"recipes/{source}.yaml").read_text()
        path, folder = Path(f"{source}.yaml"), None
    else:
        raise FileNotFoundError(
            f"--config '{source}' is neither a file nor a shipped recipe (one of {', '.join(RECIPES)})"
        )
    content = _parse(text, path)
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    values = {}
    for key, value in content.items():
        if key in _RUN_FACTS:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            raise ValueError(
                f"--config {source}: unknown key {key!r}"
                + (
                    f" (closest: {close[0]!r})"
                    if close
                    else f"; keys are those of config.json: {sorted(fields)}"
                )
            )
        if isinstance(value, str) and "float" in str(fields[key].type):
            value = _float(value)
        values[key] = value
    if folder is not None and values.get("pretrained") and not Path(values["pretrained"]).is_absolute():
        values["pretrained"] = str(folder / values["pretrained"])
    return values


def _parse(text: str, path: Path) -> dict[str, Any]:
    """The mapping in a JSON (``.json``) or YAML (any other suffix) text."""
    if path.suffix.lower() == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--config {path}: not valid JSON: {error}") from None
    else:
        import yaml

        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"--config {path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"--config {path}: expected a mapping of option names to values, got {content!r:.40}"
        )
    return content


def _float(text: str) -> float | str:
    """``"8e-3"`` (which YAML 1.1 reads as a string) -> 0.008; other text stays as it is."""
    try:
        return float(text)
    except ValueError:
        return text
