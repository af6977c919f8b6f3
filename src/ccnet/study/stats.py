"""The study's statistics: paired per-seed differences, Holm's correction, equivalence, failure counts.

A seed fixes a run's training stream, initialisation and validation scenes for every variant, so
two variants are compared by their per-seed differences (``better - baseline``, same seeds), not
by their two spreads. For each comparison:

* the mean difference and its t-based 95% interval (two-sided);
* a one-sided paired t-test in the direction the paper claims (H1: the mean difference > 0);
* Holm's step-down correction over the comparisons the plan names *primary* (fixed before the runs);
* for a claim of *no difference*, two one-sided tests (TOST) against the plan's margin: equivalence
  is shown when the mean difference is significantly above ``-margin`` and below ``+margin``;
* failure-rate claims (divergences out of n runs) as counts, with Fisher's exact test (one-sided,
  in the paper's direction).

Distributions come from `scipy.stats`; values are fractions (IoU in [0, 1]) or any unit, the
functions do not care.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _scipy

ALPHA = 0.05


@dataclass(frozen=True)
class PairedDifference:
    """``better - baseline`` on the seeds both have, with the t-based summary.

    ``p_greater``: one-sided paired t-test of H1 "mean difference > 0" (the paper's direction);
    ``interval``: the two-sided ``1 - alpha`` t interval of the mean difference. With one seed both
    are undefined (nan); with all differences equal the interval is that value and the test is
    decided by its sign."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences) if self.differences else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.differences) if self.n >= 2 else math.nan

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n >= 2 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half = float(_scipy.t.ppf(1 - self.alpha / 2, self.n - 1)) * self.se
        return (self.mean - half, self.mean + half)

    @property
    def p_greater(self) -> float:
        if self.n < 2:
            return math.nan
        if self.se == 0:
            return 0.0 if self.mean > 0 else 1.0
        return float(_scipy.t.sf(self.mean / self.se, self.n - 1))

    def tost(self, margin: float) -> float:
        """p-value of the two one-sided tests of H0 "|mean difference| >= margin" (equivalence
        within ``±margin`` is shown when it is below alpha)."""
        if margin <= 0:
            raise ValueError(f"equivalence margin must be > 0, got {margin}")
        if self.n < 2:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.mean) < margin else 1.0
        df = self.n - 1
        above = float(_scipy.t.sf((self.mean + margin) / self.se, df))  # H0: mean <= -margin
        below = float(_scipy.t.cdf((self.mean - margin) / self.se, df))  # H0: mean >= +margin
        return max(above, below)


def paired(baseline: Mapping[int, float], better: Mapping[int, float], alpha: float = ALPHA) -> PairedDifference:
    """Per-seed differences ``better[s] - baseline[s]`` over the seeds both have a finite value for."""
    seeds = tuple(sorted(s for s in set(baseline) & set(better)
                         if math.isfinite(baseline[s]) and math.isfinite(better[s])))
    return PairedDifference(seeds, tuple(better[s] - baseline[s] for s in seeds), alpha)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan and does not count
    towards the number of tests)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    m, running = len(order), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class FailureCounts:
    """Failures (e.g. diverged runs) out of runs, per arm; ``p_more``: Fisher's exact test, one-sided,
    of H1 "arm ``a`` fails more often than arm ``b``"."""

    failures_a: int
    runs_a: int
    failures_b: int
    runs_b: int

    def __post_init__(self) -> None:
        for failures, runs in ((self.failures_a, self.runs_a), (self.failures_b, self.runs_b)):
            if not 0 <= failures <= runs:
                raise ValueError(f"failure count {failures} must be within 0..{runs} runs")

    @property
    def p_more(self) -> float:
        if self.runs_a == 0 or self.runs_b == 0:
            return math.nan
        table = [[self.failures_a, self.runs_a - self.failures_a], [self.failures_b, self.runs_b - self.failures_b]]
        return float(_scipy.fisher_exact(table, alternative="greater").pvalue)


def superiority_verdict(difference: PairedDifference, p: float, alpha: float = ALPHA) -> str:
    """``shown`` (the paper's direction, p below alpha; p Holm-adjusted for primary comparisons),
    ``reversed`` (the whole interval below 0), ``not shown`` or ``undetermined`` (under 2 seeds)."""
    if difference.n < 2 or math.isnan(p):
        return "undetermined"
    if p < alpha:
        return "shown"
    return "reversed" if difference.interval[1] < 0 else "not shown"


def equivalence_verdict(difference: PairedDifference, margin: float, alpha: float = ALPHA) -> str:
    """``equivalent`` (TOST below alpha: within ±margin), ``different`` (the interval excludes 0),
    ``not shown`` (neither) or ``undetermined`` (under 2 seeds)."""
    p = difference.tost(margin)
    if math.isnan(p):
        return "undetermined"
    if p < alpha:
        return "equivalent"
    low, high = difference.interval
    return "different" if low > 0 or high < 0 else "not shown"
