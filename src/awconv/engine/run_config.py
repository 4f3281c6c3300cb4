"""A run's ``config.json``: written so the run directory can move, compared when the run resumes.

A run directory is self-contained: paths inside it are stored relative to it and paths outside it
(data, pretrained weights) as absolute paths, so a run resumes from any working directory and after
it was copied or moved. ``--resume`` continues the saved configuration; ``check_resumable`` makes
any option that may not change, given with another value, a one-line error naming the option,
the saved value and the given one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILE", "check_resumable", "portable_path", "read_run_config"]

CONFIG_FILE = "config.json"


def portable_path(path: str | os.PathLike | None, run_dir: str | os.PathLike) -> str | None:
    """``path`` relative to ``run_dir`` when it lies inside it, else absolute; ``None`` stays ``None``."""
    if path is None:
        return None
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    root = Path(os.path.abspath(os.path.expanduser(run_dir)))
    try:
        return str(absolute.relative_to(root))
    except ValueError:
        return str(absolute)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``run_dir/config.json`` as a dict, or ``None`` when the run has none."""
    path = Path(run_dir) / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_resumable(
    run_dir: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    may_change: Collection[str],
    options: Mapping[str, str] | None = None,
) -> None:
    """Fails when ``config`` differs from the run's saved configuration in a field that may not change.

    Args:
        run_dir: the run directory; one without ``config.json`` passes.
        config: the configuration of this launch, in the form it is saved in (``portable_path``...).
        may_change: fields that may differ (``epochs``, ``workers``...).
        options: field -> command-line option named in the message (default ``--field-name``).

    Raises:
        ValueError: one line naming each differing option with its saved and given value.
    """
    saved = read_run_config(run_dir)
    if saved is None:
        return
    given = json.loads(json.dumps(dict(config), default=str))
    names = options or {}
    differences = [
        f"{names.get(key, '--' + key.replace('_', '-'))} was {saved[key]!r}, now {value!r}"
        for key, value in given.items()
        if key in saved and key not in may_change and saved[key] != value
    ]
    if differences:
        allowed = ", ".join(names.get(key, "--" + key.replace("_", "-")) for key in sorted(may_change))
        raise ValueError(
            f"cannot resume '{run_dir}' with another configuration: {'; '.join(differences)}. A resumed "
            f"run keeps its saved options (only {allowed} may change); start a new run with another --out"
        )
