"""Option values written as text: ``KEY=VALUE`` lists of the command line and model specs.

Values are read as JSON where they parse (``3``, ``0.5``, ``true``, ``null``, ``[2, 3]``) and kept
as strings otherwise, so ``generator=lowrank`` and ``rank=4`` both mean what they say.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["parse_key_values", "parse_value"]


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"null"`` -> None, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_values(items: Iterable[str], option: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{"k": parse_value(v)}``.

    Args:
        items: ``KEY=VALUE`` texts.
        option: the option they came from, named in the error (``"--model-arg"``).

    Raises:
        ValueError: an item without ``=`` or without a key.
    """
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        values[key] = parse_value(value)
    return values
