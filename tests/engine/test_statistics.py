"""Paired comparisons over seeds against scipy's paired t-test on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import t as student_t
from scipy.stats import ttest_rel

from awconv.engine.statistics import mean_ci, paired_difference


@settings(max_examples=40, deadline=None)
@given(seeds=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_paired_difference_matches_scipy(seeds: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    control = rng.normal(90, 2, seeds)
    treatment = control + rng.normal(0.3, 1, seeds)
    diff = paired_difference(dict(enumerate(treatment)), dict(enumerate(control)))
    expected = ttest_rel(treatment, control)
    differences = treatment - control
    half = student_t.ppf(0.975, seeds - 1) * differences.std(ddof=1) / math.sqrt(seeds)
    assert diff.mean == pytest.approx(differences.mean(), rel=1e-12)
    assert diff.half_width == pytest.approx(half, rel=1e-9)
    assert diff.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert (diff.wins, diff.losses, diff.seeds) == (
        int((differences > 0).sum()),
        int((differences < 0).sum()),
        seeds,
    )


def test_only_common_seeds_are_paired() -> None:
    diff = paired_difference({0: 2.0, 1: 5.0, 7: 100.0}, {0: 1.0, 1: 3.0, 2: -50.0})
    assert (diff.mean, diff.seeds, diff.wins) == (1.5, 2, 2)
    assert diff.half_width == pytest.approx(mean_ci([1.0, 2.0])[1])


def test_one_seed_or_equal_differences_have_no_p_value() -> None:
    assert math.isnan(paired_difference({0: 2.0}, {0: 1.0}).p_value)
    assert math.isnan(paired_difference({0: 2.0}, {0: 1.0}).half_width)
    assert math.isnan(paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p_value)


def test_no_common_seed_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no common seed to pair: treatment has \[0\], control has \[1\]"):
        paired_difference({0: 1.0}, {1: 1.0})
