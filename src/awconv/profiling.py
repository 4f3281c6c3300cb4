"""Parameters and multiply-accumulates of registered models, and their overhead over plain ResNets.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2) on fake tensors,
so no weights are allocated and nothing is computed. The count includes AW-convolution's attention
generator (its point-wise convolutions and, for ``lowrank``, its einsum) and the per-sample
convolutions inside ``aw_conv2d``; pooling, gating and the modulation ``(1 + A) * W`` are
element-wise and, as in every FLOP counter, not counted.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import timm
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from awconv.models import AW_KWARGS

__all__ = ["FORMATS", "Profile", "format_profiles", "plain_baseline", "profile_model"]

FORMATS = ("table", "markdown", "json")

_VARIANT = re.compile(r"(?:aw_)?(?:se|cbam)?resnet(\d+)(_cifar)?")


@dataclass(frozen=True)
class Profile:
    """Size and cost of one model at one input size.

    Attributes:
        model: registered model name.
        model_kwargs: keyword arguments it was built with.
        input_size: (batch, channels, height, width) of the counted forward pass.
        params: parameter count.
        macs: multiply-accumulates of one forward pass over the whole batch.
        baseline: the plain model it is compared with, or None.
        baseline_params: the baseline's parameter count, or None.
        baseline_macs: the baseline's MACs at the same input, or None.
    """

    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int, int, int] = (1, 3, 224, 224)
    params: int = 0
    macs: int = 0
    baseline: str | None = None
    baseline_params: int | None = None
    baseline_macs: int | None = None

    @property
    def label(self) -> str:
        """The model name with its keyword arguments, e.g. ``aw_resnet50 (generator=lowrank)``."""
        if not self.model_kwargs:
            return self.model
        return f"{self.model} ({', '.join(f'{k}={v}' for k, v in self.model_kwargs.items())})"

    @property
    def extra_params(self) -> int | None:
        """Parameters over the baseline, or None without one."""
        return None if self.baseline_params is None else self.params - self.baseline_params

    @property
    def extra_macs(self) -> int | None:
        """MACs over the baseline, or None without one."""
        return None if self.baseline_macs is None else self.macs - self.baseline_macs


def plain_baseline(name: str) -> str | None:
    """The plain ResNet a variant is compared with: ``aw_seresnet50`` -> ``resnet50``.

    Returns None for names outside the ResNet families of ``awconv.models``.
    """
    match = _VARIANT.fullmatch(name)
    if match is None:
        return None
    return f"resnet{match.group(1)}{match.group(2) or ''}"


def _count(name: str, img_size: int | None, batch_size: int, model_kwargs: dict[str, Any]):
    """(params, macs, input_size) of one forward pass in eval mode, on fake tensors."""
    key = tuple(sorted((k, _hashable(v)) for k, v in model_kwargs.items()))
    return _count_cached(name, img_size, batch_size, key)


def _hashable(value: Any) -> Any:
    """Lists (``aw_stages=[3, 4]``) as tuples, so the arguments can key the cache."""
    return tuple(map(_hashable, value)) if isinstance(value, (list, tuple)) else value


@functools.lru_cache(maxsize=64)
def _count_cached(name: str, img_size: int | None, batch_size: int, kwargs_items: tuple):
    """``_count`` memoised (a table compares many variants with the same baseline)."""
    model_kwargs = dict(kwargs_items)
    with FakeTensorMode():
        model = timm.create_model(name, pretrained=False, **model_kwargs).eval()
        channels, height, width = model.pretrained_cfg["input_size"]
        channels = model_kwargs.get("in_chans", channels)
        if img_size is not None:
            height = width = img_size
        input_size = (batch_size, channels, height, width)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.empty(input_size))
        params = sum(p.numel() for p in model.parameters())
    return params, counter.get_total_flops() // 2, input_size


def profile_model(
    name: str, *, img_size: int | None = None, batch_size: int = 1, **model_kwargs: Any
) -> Profile:
    """Counts a registered model's parameters and MACs, and those of its plain baseline.

    Args:
        name: a ``timm`` model name (``awconv`` families included).
        img_size: square input side; None takes the model's default (224, or 32 for ``*_cifar``).
        batch_size: samples in the counted forward pass.
        **model_kwargs: passed to ``timm.create_model`` (e.g. ``generator="lowrank", rank=4``);
            the baseline gets them without the AWConv2d options.

    Returns:
        A ``Profile``; its baseline fields are None for models outside the ResNet families.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"model must be a registered model name, got {name!r}{hint}")
    if img_size is not None and (isinstance(img_size, bool) or img_size < 1):
        raise ValueError(f"img_size must be a positive int, got {img_size!r}")
    if isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    params, macs, input_size = _count(name, img_size, batch_size, model_kwargs)
    baseline = plain_baseline(name)
    baseline_params = baseline_macs = None
    if baseline is not None:
        plain_kwargs = {k: v for k, v in model_kwargs.items() if k not in AW_KWARGS}
        baseline_params, baseline_macs, _ = _count(baseline, input_size[2], batch_size, plain_kwargs)
    return Profile(
        name, dict(model_kwargs), input_size, params, macs, baseline, baseline_params, baseline_macs
    )


def _overhead(extra: int | None, base: int | None, unit: float, digits: int) -> str:
    """``+33.38 (+130.4%)`` or ``-`` without a baseline."""
    if extra is None or base is None:
        return "-"
    return f"{extra / unit:+.{digits}f} ({100 * extra / base:+.1f}%)"


def _rows(profiles: list[Profile]) -> list[list[str]]:
    return [
        [
            p.label,
            f"{p.params / 1e6:.2f}",
            f"{p.macs / 1e9:.3f}",
            p.baseline or "-",
            _overhead(p.extra_params, p.baseline_params, 1e6, 2),
            _overhead(p.extra_macs, p.baseline_macs, 1e9, 3),
        ]
        for p in profiles
    ]


_HEADER = ["model", "params (M)", "GMACs", "baseline", "+params (M)", "+GMACs"]


def format_profiles(profiles: list[Profile], fmt: str = "table") -> str:
    """Renders profiles as an aligned text table, a Markdown table or JSON.

    Args:
        profiles: the rows, in order.
        fmt: ``"table"``, ``"markdown"`` or ``"json"``.

    Returns:
        The text, without a trailing newline.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "json":
        return json.dumps(
            [
                {**asdict(p), "extra_params": p.extra_params, "extra_macs": p.extra_macs, "label": p.label}
                for p in profiles
            ],
            indent=2,
        )
    rows = _rows(profiles)
    if fmt == "markdown":
        lines = [_HEADER, ["---"] + ["---:"] * 2 + ["---"] + ["---:"] * 2, *rows]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(line[i]) for line in [_HEADER, *rows]) for i in range(len(_HEADER))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, 3) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in [_HEADER, *rows]
    )
