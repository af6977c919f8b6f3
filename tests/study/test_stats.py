"""The study's statistics on hand-made results: paired differences, t interval, one-sided test,
Holm, TOST and Fisher's exact test."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from ccnet.study.stats import (
    FailureCounts,
    equivalence_verdict,
    holm,
    paired,
    superiority_verdict,
)


def test_paired_difference_uses_the_common_seeds_and_the_t_interval():
    baseline = {0: 0.50, 1: 0.60, 2: 0.70, 3: 0.40}
    better = {0: 0.51, 1: 0.62, 2: 0.73, 5: 0.99}  # seed 3 and 5 are not paired
    d = paired(baseline, better)
    assert d.seeds == (0, 1, 2)
    assert d.differences == pytest.approx((0.01, 0.02, 0.03))
    assert d.mean == pytest.approx(0.02) and d.sd == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, df=2)
    assert d.interval == pytest.approx((0.02 - half, 0.02 + half))
    # the one-sided paired t-test agrees with scipy's own paired test
    expected = stats.ttest_rel([0.51, 0.62, 0.73], [0.50, 0.60, 0.70], alternative="greater").pvalue
    assert d.p_greater == pytest.approx(expected) and 0.01 < d.p_greater < 0.05


def test_paired_difference_edge_cases():
    assert math.isnan(paired({0: 0.5}, {0: 0.9}).p_greater)
    assert math.isnan(paired({0: 0.5, 1: math.nan}, {0: 0.9, 1: 0.9}).interval[0])  # nan drops the seed
    same = paired({0: 0.5, 1: 0.6}, {0: 0.6, 1: 0.7})  # both +0.1: no spread
    assert same.interval == pytest.approx((0.1, 0.1)) and same.p_greater == 0.0
    assert paired({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6}).p_greater == 1.0


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = holm([0.02, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_tost_shows_equivalence_only_when_the_90_percent_interval_lies_within_the_margin():
    close = paired({i: 0.5 for i in range(4)}, {0: 0.51, 1: 0.49, 2: 0.50, 3: 0.52})
    assert close.tost(0.05) < 0.05 and equivalence_verdict(close, 0.05) == "equivalent"
    low, high = stats.t.interval(0.90, close.n - 1, loc=close.mean, scale=close.se)
    assert -0.05 < low and high < 0.05
    # the same mean with a wide spread: neither equivalent nor different
    wide = paired({i: 0.5 for i in range(3)}, {0: 0.60, 1: 0.40, 2: 0.53})
    assert wide.tost(0.05) > 0.05 and equivalence_verdict(wide, 0.05) == "not shown"
    apart = paired({i: 0.5 for i in range(3)}, {0: 0.70, 1: 0.71, 2: 0.72})
    assert equivalence_verdict(apart, 0.05) == "different"
    with pytest.raises(ValueError, match="margin must be > 0"):
        close.tost(0)


def test_superiority_verdicts():
    up = paired({i: 0.5 for i in range(3)}, {0: 0.60, 1: 0.62, 2: 0.61})
    assert superiority_verdict(up, up.p_greater) == "shown"
    assert superiority_verdict(up, 0.2) == "not shown"  # e.g. after Holm's correction
    down = paired({i: 0.5 for i in range(3)}, {0: 0.40, 1: 0.41, 2: 0.39})
    assert superiority_verdict(down, down.p_greater) == "reversed"
    assert superiority_verdict(paired({0: 0.5}, {0: 0.9}), math.nan) == "undetermined"


def test_fisher_exact_counts_failures_in_the_claimed_direction():
    counts = FailureCounts(10, 30, 0, 30)
    assert counts.p_more == pytest.approx(math.comb(30, 10) / math.comb(60, 10))  # only the observed table
    assert FailureCounts(0, 30, 10, 30).p_more == pytest.approx(1.0)
    assert FailureCounts(3, 30, 3, 30).p_more > 0.5
    with pytest.raises(ValueError, match=r"failure count 5 must be within 0\.\.4 runs"):
        FailureCounts(5, 4, 0, 4)
