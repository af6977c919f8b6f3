"""Verdicts: from the runs' results to one verdict per planned claim (no files, no plots).

Every comparison of the plan is decided by the paired statistics of :mod:`ccnet.study.stats`:

* superiority: ``shown`` (one-sided paired t-test in the paper's direction below alpha, Holm-adjusted
  for primary comparisons), ``reversed`` (the 95% interval entirely below 0), else ``not shown``;
* equivalence: ``equivalent`` (TOST within the plan's margin below alpha), else ``not shown`` (the
  reason says when the interval excludes 0: a difference, not a match);
* failures (divergence counts): ``shown`` (Fisher's exact test in the paper's direction below alpha,
  Holm-adjusted when primary), ``reversed`` (Fisher's test in the other direction below alpha), else
  ``not shown``;
* ``not tested by this setting``, with its reason: a planned seed of either arm has not finished
  (``runs missing``), both arms are at the ceiling in every seed (context-class IoU at least
  :data:`CEILING_IOU`), or both arms diverge never or always.

Holm's correction runs over every primary comparison of the plan, a comparison not decided yet
counting with p = 1, so that the number of tests is the plan's, not the number finished so far.
The cost claims (memory, FLOPs) are deterministic measurements: :func:`ratio_verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ccnet.study.plan import PlannedComparison
from ccnet.study.results import RunResult
from ccnet.study.stats import ALPHA, FailureCounts, PairedDifference, holm, paired

SHOWN, NOT_SHOWN, REVERSED, EQUIVALENT = "shown", "not shown", "reversed", "equivalent"
NOT_TESTED = "not tested by this setting"
VERDICTS = (SHOWN, NOT_SHOWN, REVERSED, EQUIVALENT, NOT_TESTED)

CEILING_IOU = 0.90  # context-class IoU at which both arms leave the task no room to separate them
ENDED = ("done", "diverged")  # a run that counts in a divergence count


@dataclass(frozen=True)
class Decision:
    """One planned comparison, decided: its statistics, the verdict and why."""

    comparison: PlannedComparison
    difference: PairedDifference | None  # superiority / equivalence
    failures: FailureCounts | None  # failures
    p: float  # one-sided t-test, TOST or Fisher, unadjusted (nan: not computable)
    p_holm: float  # nan unless primary and decided
    verdict: str
    reason: str = ""  # for "not tested" and for an equivalence not shown because the arms differ


def _value(run: RunResult, outcome: str) -> float:
    return getattr(run, outcome) if run.done else math.nan


def _values(runs: Sequence[RunResult], outcome: str) -> dict[int, float]:
    return {r.seed: _value(r, outcome) for r in runs}


def _failure_counts(a: Sequence[RunResult], b: Sequence[RunResult]) -> FailureCounts:
    ended_a, ended_b = [r for r in a if r.status in ENDED], [r for r in b if r.status in ENDED]
    return FailureCounts(sum(r.status == "diverged" for r in ended_a), len(ended_a),
                         sum(r.status == "diverged" for r in ended_b), len(ended_b))


def _missing(c: PlannedComparison, a: Sequence[RunResult], b: Sequence[RunResult],
             difference: PairedDifference | None) -> str:
    """Why the comparison cannot be decided yet ("" when every planned seed of both arms is in)."""
    if c.kind == "failures":
        planned = len(a) + len(b)
        ended = sum(r.status in ENDED for r in (*a, *b))
        return "" if planned and ended == planned else f"runs missing: {ended} of {planned} ended"
    seeds = {r.seed for r in a} | {r.seed for r in b}
    paired_n = difference.n if difference is not None else 0
    return "" if seeds and paired_n == len(seeds) and paired_n >= 2 else (
        f"runs missing: {paired_n} of {len(seeds)} seeds paired")


def _ceiling(c: PlannedComparison, a: Sequence[RunResult], b: Sequence[RunResult]) -> bool:
    values = [_value(r, c.outcome) for r in (*a, *b)]
    return c.outcome == "context_miou" and bool(values) and all(v >= CEILING_IOU for v in values)


def verdict(c: PlannedComparison, difference: PairedDifference | None, counts: FailureCounts | None, p: float,
            alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, reason) of a comparison whose runs are all in (``p``: Holm-adjusted when primary)."""
    if counts is not None:
        rates = {counts.failures_a / counts.runs_a, counts.failures_b / counts.runs_b}
        if rates <= {0.0} or rates <= {1.0}:
            return NOT_TESTED, "both arms diverged " + ("never" if rates <= {0.0} else "always")
        if p < alpha:
            return SHOWN, ""
        reverse = FailureCounts(counts.failures_b, counts.runs_b, counts.failures_a, counts.runs_a).p_more
        return (REVERSED, "") if reverse < alpha else (NOT_SHOWN, "")
    assert difference is not None
    low, high = difference.interval
    if c.kind == "equivalence":
        if p < alpha:
            return EQUIVALENT, ""
        return NOT_SHOWN, ("the arms differ: the interval excludes 0" if low > 0 or high < 0 else "")
    if p < alpha:
        return SHOWN, ""
    return (REVERSED, "") if high < 0 else (NOT_SHOWN, "")


def decide(comparisons: Sequence[PlannedComparison], runs: Mapping[str, Sequence[RunResult]],
           alpha: float = ALPHA) -> list[Decision]:
    """Decide every planned comparison on ``runs`` (variant -> its runs, one per planned seed)."""
    raw = []
    for c in comparisons:
        a, b = runs.get(c.baseline, ()), runs.get(c.better, ())
        difference, counts = None, None
        if c.kind == "failures":
            counts = _failure_counts(a, b)
            p = counts.p_more
        else:
            difference = paired(_values(a, c.outcome), _values(b, c.outcome), alpha)
            p = difference.p_greater if c.kind == "superiority" else difference.tost(c.margin or 0.0)
        missing = _missing(c, a, b, difference)
        ceiling = not missing and c.kind != "failures" and _ceiling(c, a, b)
        raw.append((c, difference, counts, p, missing or ("both arms at the ceiling" if ceiling else "")))
    primary = [i for i, (c, *_) in enumerate(raw) if c.primary]
    adjusted = holm([1.0 if raw[i][4] or math.isnan(raw[i][3]) else raw[i][3] for i in primary])
    p_holm = dict(zip(primary, adjusted, strict=True))
    decisions = []
    for i, (c, difference, counts, p, untested) in enumerate(raw):
        q = p_holm.get(i, math.nan)
        if untested:
            decisions.append(Decision(c, difference, counts, p, math.nan, NOT_TESTED, untested))
        else:
            decisions.append(Decision(c, difference, counts, p, q,
                                      *verdict(c, difference, counts, q if c.primary else p, alpha)))
    return decisions


def ratio_verdict(measured: float, claimed: float, tolerance: float = 0.10) -> str:
    """A deterministic cost claim ("``claimed`` times less"): ``shown`` when the measured factor is
    at least the claimed one less ``tolerance`` (the paper rounds), ``not shown`` below it;
    ``not tested by this setting`` without a measurement."""
    if measured is None or math.isnan(measured) or claimed <= 0:
        return NOT_TESTED
    return SHOWN if measured >= (1 - tolerance) * claimed else NOT_SHOWN
