"""Verdicts on hand-made results: each verdict reachable, Holm over the primary comparisons, TOST,
Fisher counts and "not tested" when runs are missing."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from ccnet.study.claims import EQUIVALENT, NOT_SHOWN, NOT_TESTED, REVERSED, SHOWN, decide, ratio_verdict
from ccnet.study.plan import PlannedComparison
from ccnet.study.results import RunResult
from ccnet.study.stats import holm


def _runs(variant, values, status="done"):
    return [RunResult(variant, seed, status, context_miou=v) for seed, v in enumerate(values)]


RUNS = {"a": _runs("a", (0.40, 0.45, 0.42)), "up": _runs("up", (0.90, 0.93, 0.91)),
        "flat": _runs("flat", (0.42, 0.44, 0.46)), "down": _runs("down", (0.10, 0.12, 0.11)),
        "same": _runs("same", (0.41, 0.45, 0.42)), "hi1": _runs("hi1", (0.95, 0.96, 0.97)),
        "hi2": _runs("hi2", (0.97, 0.98, 0.99)), "part": [*_runs("part", (0.9, 0.9)), RunResult("part", 2, "new")],
        "bad": [*_runs("bad", [0.1] * 8, "diverged"), *_runs("bad", [0.1] * 2)],
        "good": _runs("good", [0.1] * 10)}


def _decide(*comparisons):
    return {d.comparison.name: d for d in decide(list(comparisons), RUNS)}


def test_every_verdict_is_reachable_and_holm_runs_over_the_primary_comparisons():
    d = _decide(PlannedComparison("up", "up beats a", "superiority", "a", "up"),
                PlannedComparison("flat", "flat beats a", "superiority", "a", "flat"),
                PlannedComparison("down", "down beats a", "superiority", "a", "down"),
                PlannedComparison("same", "same matches a", "equivalence", "a", "same", primary=False, margin=0.05),
                PlannedComparison("ceiling", "hi2 beats hi1", "superiority", "hi1", "hi2", primary=False),
                PlannedComparison("part", "part beats a", "superiority", "a", "part"))
    assert d["up"].verdict == SHOWN and d["flat"].verdict == NOT_SHOWN and d["down"].verdict == REVERSED
    assert d["same"].verdict == EQUIVALENT and math.isnan(d["same"].p_holm)
    assert d["ceiling"].verdict == NOT_TESTED and "ceiling" in d["ceiling"].reason
    assert d["part"].verdict == NOT_TESTED and d["part"].reason == "runs missing: 2 of 3 seeds paired"
    p = [d[n].p for n in ("up", "flat", "down")]
    assert p[0] == pytest.approx(stats.ttest_rel([0.90, 0.93, 0.91], [0.40, 0.45, 0.42], alternative="greater").pvalue)
    # the missing comparison counts with p = 1: four tests, as planned
    assert [d[n].p_holm for n in ("up", "flat", "down")] == pytest.approx(holm([*p, 1.0])[:3])


def test_an_equivalence_with_a_clear_difference_is_not_shown_and_says_so():
    d = _decide(PlannedComparison("eq", "up matches a", "equivalence", "a", "up", margin=0.05))["eq"]
    assert d.verdict == NOT_SHOWN and "excludes 0" in d.reason


def test_failure_counts_use_fisher_in_both_directions():
    d = _decide(PlannedComparison("s", "good fails less", "failures", "bad", "good", outcome="diverged"),
                PlannedComparison("r", "bad fails less", "failures", "good", "bad", outcome="diverged"),
                PlannedComparison("n", "good fails less than good", "failures", "good", "good", outcome="diverged"))
    assert d["s"].p == pytest.approx(stats.fisher_exact([[8, 2], [0, 10]], alternative="greater").pvalue)
    assert d["s"].verdict == SHOWN and d["r"].verdict == REVERSED
    assert d["n"].verdict == NOT_TESTED and d["n"].reason == "both arms diverged never"


def test_cost_claims_are_shown_within_the_papers_rounding():
    assert ratio_verdict(10.1, 11.0) == SHOWN and ratio_verdict(5.0, 11.0) == NOT_SHOWN
    assert ratio_verdict(math.nan, 11.0) == NOT_TESTED
