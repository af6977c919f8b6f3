"""The pre-registered study's analysis and report: every comparison of ``plan.json`` decided by the
paired statistics of :mod:`ccnet.study.stats` on the runs' own files.

The comparisons, which of them are primary (Holm-corrected together), the margins and the seeds come
from the study folder's ``plan.json`` (written before the first run), not from the code as it is now.
Verdicts:

* superiority: ``shown`` (one-sided paired t-test in the paper's direction below 0.05, Holm-adjusted
  for primary comparisons), ``reversed`` (the 95% interval entirely below 0), ``not shown``;
* equivalence: ``equivalent`` (TOST within the margin), ``different``, ``not shown``;
* failures: ``shown`` (Fisher's exact test below 0.05, Holm-adjusted when primary), ``not shown``;
* ``not tested by this setting``: both arms at the ceiling in every seed (context-class IoU at least
  :data:`CEILING_IOU`), or, for failures, both arms failing never or always: the setting cannot
  separate them; ``undetermined``: under two paired seeds (or no finished run of an arm).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccnet.files import atomic_write_text
from ccnet.study.plan import PLAN_NAME, PlannedComparison
from ccnet.study.results import RunResult, load_run, read_log, summarize
from ccnet.study.runner import read_json, run_dir
from ccnet.study.stats import (
    ALPHA,
    FailureCounts,
    PairedDifference,
    equivalence_verdict,
    holm,
    paired,
    superiority_verdict,
)

logger = logging.getLogger(__name__)

CEILING_IOU = 0.90


@dataclass(frozen=True)
class Decision:
    """One planned comparison, decided."""

    comparison: PlannedComparison
    difference: PairedDifference | None
    failures: FailureCounts | None
    p: float  # one-sided t-test, TOST or Fisher, unadjusted
    p_holm: float  # nan unless primary
    verdict: str


def _outcome(run: RunResult, outcome: str) -> float:
    return getattr(run, outcome) if run.done else math.nan


def _values(runs: list[RunResult], outcome: str) -> dict[int, float]:
    return {r.seed: _outcome(r, outcome) for r in runs}


def decide(comparisons: list[PlannedComparison], runs: dict[str, list[RunResult]]) -> list[Decision]:
    """Decide every planned comparison; Holm's correction over the primary ones together."""
    raw: list[tuple[PlannedComparison, PairedDifference | None, FailureCounts | None, float]] = []
    for c in comparisons:
        a, b = runs.get(c.baseline, []), runs.get(c.better, [])
        if c.kind == "failures":
            ended_a = [r for r in a if r.status in ("done", "diverged")]
            ended_b = [r for r in b if r.status in ("done", "diverged")]
            counts = FailureCounts(sum(r.status == "diverged" for r in ended_a), len(ended_a),
                                   sum(r.status == "diverged" for r in ended_b), len(ended_b))
            raw.append((c, None, counts, counts.p_more))
        else:
            difference = paired(_values(a, c.outcome), _values(b, c.outcome))
            p = difference.p_greater if c.kind == "superiority" else difference.tost(c.margin or 0.0)
            raw.append((c, difference, None, p))
    primary = [i for i, (c, *_rest) in enumerate(raw) if c.primary]
    adjusted = holm([raw[i][3] for i in primary])
    p_holm = {i: p for i, p in zip(primary, adjusted, strict=True)}
    decisions = []
    for i, (c, difference, counts, p) in enumerate(raw):
        q = p_holm.get(i, math.nan)
        decisions.append(Decision(c, difference, counts, p, q, _verdict(c, difference, counts, p if math.isnan(q)
                                                                       else q, runs)))
    return decisions


def _verdict(c: PlannedComparison, difference: PairedDifference | None, counts: FailureCounts | None, p: float,
             runs: dict[str, list[RunResult]]) -> str:
    if counts is not None:
        if counts.runs_a == 0 or counts.runs_b == 0:
            return "undetermined"
        rates = {counts.failures_a / counts.runs_a, counts.failures_b / counts.runs_b}
        if rates <= {0.0} or rates <= {1.0}:
            return "not tested by this setting"
        return "shown" if p < ALPHA else "not shown"
    assert difference is not None
    if difference.n < 2:
        return "undetermined"
    both = [_outcome(r, c.outcome) for name in (c.baseline, c.better) for r in runs[name]
            if r.seed in difference.seeds]
    if c.outcome == "context_miou" and all(v >= CEILING_IOU for v in both):
        return "not tested by this setting"
    if c.kind == "equivalence":
        return equivalence_verdict(difference, c.margin or 0.0)
    return superiority_verdict(difference, p)


# -- the report ---------------------------------------------------------------------------------
def _pct(value: float, digits: int = 1, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def decision_row(d: Decision) -> str:
    c = d.comparison
    if d.failures is not None:
        f = d.failures
        measured = (f"diverged: {c.baseline} {f.failures_a} of {f.runs_a}, {c.better} {f.failures_b} of "
                    f"{f.runs_b}")
        test = "Fisher's exact, one-sided"
    else:
        diff = d.difference
        assert diff is not None
        seeds = ", ".join(f"s{s}: {_pct(v, sign=True)}" for s, v in zip(diff.seeds, diff.differences, strict=True))
        low, high = diff.interval
        measured = (f"{seeds or '-'}; mean {_pct(diff.mean, sign=True)} "
                    f"[{_pct(low, sign=True)}, {_pct(high, sign=True)}]")
        test = ("paired t, one-sided" if c.kind == "superiority"
                else f"TOST, margin ±{_pct(c.margin or 0.0)}")
    return (f"| {c.claim} | {c.better} vs {c.baseline} | {measured} | {test} | {_p(d.p)} | "
            f"{_p(d.p_holm) if c.primary else 'secondary'} | **{d.verdict}** |")


def _mean_log(path: Path, key: str) -> float:
    values = [r[key] for r in read_log(path / "log.jsonl") if key in r and r.get("type") != "eval"]
    return sum(values) / len(values) if values else math.nan


def experiment_table(output: Path, experiment: dict[str, Any], runs: dict[str, list[RunResult]]) -> list[str]:
    lines = ["| variant | runs finished | diverged | context IoU | mIoU | grey on key lines | grey off them | "
             "grad norm CE / consistency (mean, logged steps) |", "|---|---|---|---|---|---|---|---|"]
    for row in experiment["rows"]:
        variant = row["variant"]
        rs = runs[variant]
        ce = [_mean_log(run_dir(output, variant, r.seed), "grad_norm_ce") for r in rs]
        cons = [_mean_log(run_dir(output, variant, r.seed), "grad_norm_consistency") for r in rs]
        ce_mean = [v for v in ce if not math.isnan(v)]
        cons_mean = [v for v in cons if not math.isnan(v)]
        grads = (f"{sum(ce_mean) / len(ce_mean):.2f} / {sum(cons_mean) / len(cons_mean):.2f}"
                 if ce_mean and cons_mean else "-")
        lines.append(
            f"| {row['label']} (`{variant}`) | {sum(r.done for r in rs)} of {len(rs)} | "
            f"{sum(r.status == 'diverged' for r in rs)} | {summarize(rs, 'context_miou').text()} | "
            f"{summarize(rs, 'miou').text()} | {summarize(rs, 'one_hop_accuracy').text()} | "
            f"{summarize(rs, 'two_hops_accuracy').text()} | {grads} |")
    return lines


BLOCK_BENCH = "block_bench.json"  # a copy of ``ccnet bench block``'s bench.json (docs/benchmarks/block)


def memory_lines(path: Path) -> list[str]:
    """The paper's memory claim (RCCA R=2 needs ~11x less than one non-local block) from a
    ``ccnet bench block`` result at the paper's scale, or how to add it."""
    bench = read_json(path)
    if bench is None:
        return [f"Memory (paper: RCCA 11x less than a non-local block): not in this folder; copy the `bench.json` "
                f"of `ccnet bench block` (docs/benchmarks/block) to `{BLOCK_BENCH}` and regenerate."]
    rows = {(r["block"], r["layout"]): r for r in bench.get("block", [])}
    lines = [f"Memory at the paper's scale (`ccnet bench block`: {bench.get('device')}, {bench.get('dtype')}, one "
             "512-channel 97x97 feature map; paper: RCCA needs 11x less GPU memory than one non-local block):", ""]
    for layout in sorted({layout for _, layout in rows}):
        rcca, nonlocal_ = rows.get(("rcca_r2", layout)), rows.get(("non_local_x1", layout))
        if rcca and nonlocal_:
            lines.append(f"- {layout}: forward peak {nonlocal_['forward_peak_mb'] / rcca['forward_peak_mb']:.1f}x "
                         f"less, forward+backward "
                         f"{nonlocal_['forward_backward_peak_mb'] / rcca['forward_backward_peak_mb']:.1f}x less "
                         f"({rcca['forward_backward_peak_mb']:.0f} MB against "
                         f"{nonlocal_['forward_backward_peak_mb']:.0f} MB); FLOPs "
                         f"{100 * (1 - rcca['gflops'] / nonlocal_['gflops']):.1f}% fewer (paper: ~85%).")
    return lines


def planned_report(output: Path, command: str = "") -> list[str]:
    """The report's lines for the study in ``output`` (its ``plan.json`` and run files)."""
    output = Path(output)
    plan = read_json(output / PLAN_NAME)
    if plan is None:
        raise ValueError(f"{output / PLAN_NAME}: no plan; run ccnet reproduce --output {output} first")
    runs: dict[str, list[RunResult]] = {}
    comparisons: list[PlannedComparison] = []
    for experiment in plan["experiments"]:
        for row in experiment["rows"]:
            runs.setdefault(row["variant"], [load_run(output, row["variant"], s) for s in experiment["seeds"]])
        comparisons += [PlannedComparison(**c) for c in experiment["comparisons"]]
    decisions = decide(comparisons, runs)
    finished = sum(r.status in ("done", "diverged") for rs in runs.values() for r in rs)
    total = sum(len(rs) for rs in runs.values())
    lines = [
        "# CCNet's claims, tested under a plan fixed before the runs",
        "",
        f"Generated from `{PLAN_NAME}` (written before the first run) and the runs' own files{command}: "
        f"{finished} of {total} planned runs finished. Outcome: {plan['outcome']}. Every comparison is paired by "
        "seed (a seed fixes the training stream, the initialisation and the validation scenes of every variant): "
        "the per-seed differences (points of IoU), their mean and t-based 95% interval, a one-sided paired t-test "
        f"in the paper's direction; Holm's correction over the {len(plan['primary'])} primary comparisons "
        f"together; TOST against the plan's margin for claims of no difference; Fisher's exact test for "
        f"divergence counts; alpha {plan['alpha']}.",
        "",
        "## The paper's claims",
        "",
        "| claim | comparison | per-seed differences; mean [95% interval] | test | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|",
        *(decision_row(d) for d in decisions),
        "",
        "*Not tested by this setting*: both arms at the ceiling (context IoU at least "
        f"{_pct(CEILING_IOU, 0)} in every seed) or, for divergence, both never or always diverging. "
        "Out of reach on synthetic data, whatever the verdicts: the absolute numbers (the paper's are "
        "Cityscapes val with ResNet-101), and margins smaller than the authors' own run-to-run spread (R=3 "
        "over R=2, RCCA over non-local, the consistency loss's +0.7).",
    ]
    lines += ["", "## Cost: memory and FLOPs", "", *memory_lines(output / BLOCK_BENCH)]
    for experiment in plan["experiments"]:
        s = experiment["settings"]
        lines += ["", f"## {experiment['title']}", "", experiment["design"], "",
                  f"Seeds {', '.join(map(str, experiment['seeds']))}; {s['size'][0]}x{s['size'][1]} scenes, "
                  f"{s['iterations']} iterations of batch {s['batch_size']}, {s['val_samples']} validation scenes.",
                  "", *experiment_table(output, experiment, runs)]
    lines += ["", "## Pilots (seeds 100 and up, not in the results) and the choices they made", "",
              *(f"- {p}" for p in plan["pilots"])]
    problems = [f"- {r.variant} seed {r.seed}: {r.status}{': ' + r.error if r.error else ''}"
                for rs in runs.values() for r in rs if r.status not in ("done",)
                and not r.variant.startswith("stability_")]
    lines += ["", "## Runs not finished (outside the stability experiment, where divergence is the outcome)", "",
              *(problems or ["None."])]
    return lines


def write_planned_report(output: Path, command: str = "") -> Path:
    path = Path(output) / "report.md"
    atomic_write_text(path, "\n".join(planned_report(output, command)) + "\n")
    logger.info(f"wrote {path}")
    return path
