"""Statistics over seeds: the mean with its t interval, and the paired difference of two models."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

__all__ = ["PairedDifference", "format_mean_ci", "mean_ci", "paired_difference"]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its ``confidence`` interval (t distribution); NaN width for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(student_t.ppf(0.5 + confidence / 2, len(values) - 1)) * sem


def format_mean_ci(mean: float, half_width: float, digits: int, sign: bool = False) -> str:
    """``"mean ± half"`` with ``digits`` decimals, or just the mean when the width is NaN (one value)."""
    text = f"{mean:{'+' if sign else ''}.{digits}f}"
    return text if math.isnan(half_width) else f"{text} ± {half_width:.{digits}f}"


@dataclass(frozen=True)
class PairedDifference:
    """``treatment - control`` over the seeds both have.

    Attributes:
        mean: mean difference.
        half_width: half-width of its 95% t interval (NaN for one seed).
        wins: seeds where the treatment is higher.
        losses: seeds where it is lower.
        seeds: seeds compared.
        p_value: two-sided paired t-test (NaN for one seed, or when every difference is equal).
    """

    mean: float
    half_width: float
    wins: int
    losses: int
    seeds: int
    p_value: float

    def cells(self, digits: int) -> tuple[str, str, str]:
        """Table cells: the signed difference ± its interval, ``"wins / losses of seeds"`` and p."""
        return (
            format_mean_ci(self.mean, self.half_width, digits, sign=True),
            f"{self.wins} / {self.losses} of {self.seeds}",
            "n/a" if math.isnan(self.p_value) else f"{self.p_value:.3f}",
        )


def paired_difference(treatment: Mapping[int, float], control: Mapping[int, float]) -> PairedDifference:
    """Compares two models seed by seed.

    Args:
        treatment: seed -> metric.
        control: seed -> metric.

    Raises:
        ValueError: when the two share no seed.
    """
    seeds = sorted(set(treatment) & set(control))
    if not seeds:
        raise ValueError(
            f"no common seed to pair: treatment has {sorted(treatment)}, control has {sorted(control)}"
        )
    differences = [treatment[s] - control[s] for s in seeds]
    mean, half_width = mean_ci(differences)
    p_value = math.nan
    if len(differences) > 1 and statistics.stdev(differences) > 0:
        t_statistic = mean / (statistics.stdev(differences) / math.sqrt(len(differences)))
        p_value = float(2 * student_t.sf(abs(t_statistic), len(differences) - 1))
    return PairedDifference(
        mean=mean,
        half_width=half_width,
        wins=sum(d > 0 for d in differences),
        losses=sum(d < 0 for d in differences),
        seeds=len(seeds),
        p_value=p_value,
    )
