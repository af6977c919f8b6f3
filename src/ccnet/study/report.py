"""The study's report, generated from a study folder's own files: ``report.md``, ``verdicts.md``
and the figures next to them.

A pre-registered study (with ``plan.json``): the comparisons, primary ones, margins and seeds come
from the plan written before the first run, the verdicts from `ccnet.study.claims`, the
paper's numbers from `ccnet.study.paper`, the figures from `ccnet.study.plots`; settings
quoted in prose from the plan and `ccnet.config.Config`, distances from the scene generator.
A folder without a plan is the first study: `ccnet.study.first_report`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ccnet.errors import InputError
from ccnet.files import atomic_write_text
from ccnet.study.claims import CEILING_IOU, NOT_TESTED, Decision, decide, ratio_verdict
from ccnet.study.describe import commands_text, key_distances, setting_text, study_config
from ccnet.study.paper import PAPER, planned
from ccnet.study.plan import PLAN_NAME, PlannedComparison
from ccnet.study.plots import plot_context_curves, plot_forest
from ccnet.study.results import RunResult, load_run, read_log, summarize
from ccnet.study.runner import read_json, run_dir

logger = logging.getLogger(__name__)

BLOCK_BENCH = "block_bench.json"  # a copy of ``ccnet bench block``'s bench.json (docs/benchmarks/block)
FIGURES = ("forest.png", "context_curves.png")
VERDICTS_NAME = "verdicts.md"

OUT_OF_REACH = (
    "**Out of reach on synthetic data**, whatever the verdicts: the absolute numbers (the paper's are "
    "Cityscapes val mIoU with ResNet-101; these scenes and this small model are another task), and margins "
    "smaller than the authors' own run-to-run spread, such as R=3 over R=2 ({r3}) and RCCA over one non-local "
    "block ({nl}): a synthetic proxy cannot confirm or refute a gap the original runs do not resolve either.")

COLUMNS_FAVOURS = (
    "**The columns task favours the criss-cross geometry.** Each grey object lies within the columns of the "
    "key that decides its class, so one criss-cross hop along the column reaches it, and every scene holds all "
    "three key colours, so an image-wide summary (PPM's or ASPP's pooling) is the same for every arrangement. "
    "It tests the paper's argument, that attention gives each pixel context pooling cannot, not its Cityscapes "
    "margins; RCCA winning here says nothing about how large its edge is on real scenes.")


# -- loading -------------------------------------------------------------------------------------
def load_study(output: Path) -> tuple[dict[str, Any], dict[str, list[RunResult]], list[Decision]]:
    """The plan, every planned run (one per variant and planned seed) and the decided comparisons."""
    plan = read_json(output / PLAN_NAME)
    if plan is None:
        raise InputError(f"{output / PLAN_NAME}: no plan; run ccnet reproduce --output {output} first")
    runs: dict[str, list[RunResult]] = {}
    comparisons: list[PlannedComparison] = []
    for experiment in plan["experiments"]:
        for row in experiment["rows"]:
            runs.setdefault(row["variant"], [load_run(output, row["variant"], s) for s in experiment["seeds"]])
        comparisons += [PlannedComparison(**c) for c in experiment["comparisons"]]
    return plan, runs, decide(comparisons, runs, alpha=plan["alpha"])


# -- rendering -------------------------------------------------------------------------------------
def _pct(value: float, digits: int = 1, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def _verdict(d: Decision) -> str:
    return f"**{d.verdict}**" + (f" ({d.reason})" if d.reason else "")


def mean_interval(d: Decision) -> str:
    """``+9.1 [-26.9, +45.0]`` (points), or the divergence counts of a failures comparison."""
    if d.failures is not None:
        f = d.failures
        return f"diverged {f.failures_b} of {f.runs_b} vs {f.failures_a} of {f.runs_a}"
    diff = d.difference
    assert diff is not None
    low, high = diff.interval
    return f"{_pct(diff.mean, sign=True)} [{_pct(low, sign=True)}, {_pct(high, sign=True)}]"


def decision_row(d: Decision) -> str:
    """One claim: per-seed differences, mean and 95% interval, test, p, Holm-adjusted p, verdict."""
    c = d.comparison
    if d.failures is not None:
        measured = mean_interval(d)
        test = "Fisher's exact, one-sided"
    else:
        diff = d.difference
        assert diff is not None
        seeds = ", ".join(f"s{s}: {_pct(v, sign=True)}" for s, v in zip(diff.seeds, diff.differences, strict=True))
        measured = f"{seeds or '-'}; mean {mean_interval(d)}"
        test = "paired t, one-sided" if c.kind == "superiority" else f"TOST, margin ±{_pct(c.margin or 0.0)}"
    return (f"| {c.claim} | {planned(c.name)} | {c.better} vs {c.baseline} | {measured} | {test} | {_p(d.p)} | "
            f"{_p(d.p_holm) if c.primary else 'secondary'} | {_verdict(d)} |")


def _bench_rows(path: Path) -> tuple[dict | None, dict[str, tuple[dict, dict]]]:
    bench = read_json(path)
    if bench is None:
        return None, {}
    rows = {(r["block"], r["layout"]): r for r in bench.get("block", [])}
    pairs = {layout: (rows[("rcca_r2", layout)], rows[("non_local_x1", layout)])
             for _, layout in sorted(rows) if ("rcca_r2", layout) in rows and ("non_local_x1", layout) in rows}
    return bench, pairs


def memory_lines(path: Path) -> list[str]:
    """The paper's memory and FLOPs claims from a ``ccnet bench block`` result at the paper's scale,
    or how to add it."""
    bench, pairs = _bench_rows(path)
    memory, flops = PAPER["memory_ratio"], PAPER["flops_fewer"]
    if bench is None:
        return [f"Memory (paper: RCCA {memory.text}): not in this folder; copy the `bench.json` of "
                f"`ccnet bench block` (docs/benchmarks/block) to `{BLOCK_BENCH}` and regenerate."]
    lines = [f"Memory at the paper's scale (`ccnet bench block`: {bench.get('device')}, {bench.get('dtype')}, one "
             f"512-channel 97x97 feature map; paper: RCCA {memory.text}, {flops.text}):", ""]
    for layout, (rcca, nl) in pairs.items():
        ratio = nl["forward_backward_peak_mb"] / rcca["forward_backward_peak_mb"]
        lines.append(f"- {layout}: forward peak {nl['forward_peak_mb'] / rcca['forward_peak_mb']:.1f}x less, "
                     f"forward+backward {ratio:.1f}x less ({rcca['forward_backward_peak_mb']:.0f} MB against "
                     f"{nl['forward_backward_peak_mb']:.0f} MB; **{ratio_verdict(ratio, memory.value)}**); FLOPs "
                     f"{100 * (1 - rcca['gflops'] / nl['gflops']):.1f}% fewer (paper: {100 * flops.value:.0f}%).")
    lines += ["", f"A deterministic measurement, no seeds: *shown* when the measured factor is at least 90% of the "
              f"paper's (which rounds). Source of the paper's figures: {memory.source}."]
    return lines


def _cost_verdicts(path: Path) -> list[str]:
    """verdicts.md rows of the memory and FLOPs claims (the smallest factor over the layouts)."""
    _, pairs = _bench_rows(path)
    memory, flops = PAPER["memory_ratio"], PAPER["flops_fewer"]
    if not pairs:
        return [f"| RCCA needs {memory.text} | {memory.value:g}x | - | {NOT_TESTED} |"]
    ratio = min(nl["forward_backward_peak_mb"] / rcca["forward_backward_peak_mb"] for rcca, nl in pairs.values())
    fewer = min(1 - rcca["gflops"] / nl["gflops"] for rcca, nl in pairs.values())
    return [f"| RCCA (R=2) needs {memory.text} (forward+backward peak) | {memory.value:g}x | {ratio:.1f}x "
            f"(`ccnet bench block`) | {ratio_verdict(ratio, memory.value)} |",
            f"| RCCA (R=2) needs {flops.text} | {100 * flops.value:.0f}% | {100 * fewer:.1f}% (`ccnet bench block`) | "
            f"{ratio_verdict(1 / (1 - fewer), 1 / (1 - flops.value))} |"]


def verdicts_table(decisions: Sequence[Decision], bench: Path) -> list[str]:
    """The short table README and docs include verbatim."""
    lines = ["| claim | paper | measured: mean difference [95% CI] | verdict |", "|---|---|---|---|"]
    for d in decisions:
        lines.append(f"| {d.comparison.claim} | {planned(d.comparison.name)} | {mean_interval(d)} | "
                     f"{d.verdict}{f' ({d.reason})' if d.reason else ''} |")
    return lines + _cost_verdicts(bench)


def _mean_log(path: Path, key: str) -> float:
    values = [r[key] for r in read_log(path / "log.jsonl") if key in r and r.get("type") != "eval"]
    return sum(values) / len(values) if values else math.nan


def experiment_table(output: Path, experiment: Mapping[str, Any], runs: Mapping[str, list[RunResult]]) -> list[str]:
    lines = ["| variant | runs finished | diverged | context IoU | mIoU | grey on key lines | grey off them | "
             "grad norm CE / consistency (mean, logged steps) |", "|---|---|---|---|---|---|---|---|"]
    for row in experiment["rows"]:
        variant = row["variant"]
        rs = runs[variant]
        ce = [v for v in (_mean_log(run_dir(output, variant, r.seed), "grad_norm_ce") for r in rs) if not math.isnan(v)]
        cons = [v for v in (_mean_log(run_dir(output, variant, r.seed), "grad_norm_consistency") for r in rs)
                if not math.isnan(v)]
        grads = f"{sum(ce) / len(ce):.2f} / {sum(cons) / len(cons):.2f}" if ce and cons else "-"
        lines.append(
            f"| {row['label']} (`{variant}`) | {sum(r.done for r in rs)} of {len(rs)} | "
            f"{sum(r.status == 'diverged' for r in rs)} | {summarize(rs, 'context_miou').text()} | "
            f"{summarize(rs, 'miou').text()} | {summarize(rs, 'one_hop_accuracy').text()} | "
            f"{summarize(rs, 'two_hops_accuracy').text()} | {grads} |")
    return lines


def experiment_setting(experiment: Mapping[str, Any]) -> str:
    """Seeds, model, optimiser, size and the key distances of one experiment, from the plan and the
    default config (the first row's variant; rows differ only in their own overrides)."""
    s = experiment["settings"]
    config = study_config(s, experiment["rows"][0]["overrides"], seed=experiment["seeds"][0])
    task = config.data.synthetic_task
    return (f"Seeds {', '.join(map(str, experiment['seeds']))}; {setting_text(config)}, {s['val_samples']} "
            f"validation scenes per seed; task `{task}`: each grey object lies "
            f"{key_distances(config).text()} (nearest edges, validation scenes of seed {experiment['seeds'][0]}).")


def planned_report(output: Path) -> tuple[list[str], list[str], list[Decision], dict[str, Any],
                                          dict[str, list[RunResult]]]:
    """The lines of ``report.md`` and ``verdicts.md`` for the study in ``output``, with what the figures need."""
    output = Path(output)
    plan, runs, decisions = load_study(output)
    record = read_json(output / "study.json") or {}
    finished = sum(r.status in ("done", "diverged") for rs in runs.values() for r in rs)
    total = sum(len(rs) for rs in runs.values())
    made_by = f" by {commands_text(record)}" if record else ""
    r3, nl = PAPER["r3"].value - PAPER["r2"].value, PAPER["r2"].value - PAPER["nonlocal"].value
    lines = [
        "# CCNet's claims, tested under a plan fixed before the runs",
        "",
        f"Generated from `{PLAN_NAME}` (written before the first run) and the runs' own files, trained{made_by}; "
        f"regenerate with `ccnet reproduce --output DIR --report-only`. {finished} of {total} planned runs "
        f"finished. Outcome: {plan['outcome']}. Every comparison is paired by seed (a seed fixes the training "
        "stream, the initialisation and the validation scenes of every variant): the per-seed differences (points "
        "of IoU), their mean and t-based 95% interval, a one-sided paired t-test in the paper's direction; Holm's "
        f"correction over the {len(plan['primary'])} primary comparisons together (one not decided yet counts with "
        "p = 1); TOST against the plan's margin for claims of no difference; Fisher's exact test for divergence "
        f"counts; alpha {plan['alpha']}.",
        "",
        OUT_OF_REACH.format(r3=f"{r3:+.1f} mIoU in the paper", nl=f"{nl:+.1f}"),
        "",
        COLUMNS_FAVOURS,
        "",
        "## The paper's claims",
        "",
        "| claim | paper | comparison | per-seed differences; mean [95% interval] | test | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *(decision_row(d) for d in decisions),
        "",
        f"*Not tested by this setting*: a planned seed of an arm has not finished (runs missing), both arms at the "
        f"ceiling (context IoU at least {_pct(CEILING_IOU, 0)} in every seed) or, for divergence, both never or "
        f"always diverging. The paper's numbers: {PAPER['r0'].source}; {PAPER['nonlocal'].source}; "
        f"{PAPER['ccl_piecewise'].source}.",
        "",
        "![paired differences](forest.png)",
        "",
        "## Cost: memory and FLOPs",
        "",
        *memory_lines(output / BLOCK_BENCH),
    ]
    for experiment in plan["experiments"]:
        lines += ["", f"## {experiment['title']}", "", experiment["design"], "", experiment_setting(experiment), "",
                  *experiment_table(output, experiment, runs)]
    lines += ["", "![context-class IoU during training](context_curves.png)", "",
              "## Pilots (seeds 100 and up, not in the results) and the choices they made", "",
              *(f"- {p}" for p in plan["pilots"])]
    problems = [f"- {r.variant} seed {r.seed}: {r.status}{': ' + r.error if r.error else ''}"
                for rs in runs.values() for r in rs if r.status != "done" and not r.variant.startswith("stability_")]
    lines += ["", "## Runs not finished (outside the stability experiment, where divergence is the outcome)", "",
              *(problems or ["None."])]
    verdicts = [*verdicts_table(decisions, output / BLOCK_BENCH), "",
                "Paired over seeds, points of context-class IoU; generated with the full report (`report.md`) by "
                "`ccnet reproduce --report-only`."]
    return lines, verdicts, decisions, plan, runs


def write_planned_report(output: Path) -> Path:
    """``report.md``, ``verdicts.md``, ``forest.png`` and ``context_curves.png`` in ``output``."""
    output = Path(output)
    lines, verdicts, decisions, plan, runs = planned_report(output)
    path = output / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(output / VERDICTS_NAME, "\n".join(verdicts) + "\n")
    plot_forest(decisions, output / FIGURES[0])
    plot_context_curves(plan["experiments"], runs, output / FIGURES[1])
    logger.info(f"wrote {path}, {VERDICTS_NAME} and {', '.join(FIGURES)}")
    return path


def write_report(output: Path) -> Path:
    """Write the report of the study folder ``output`` (pre-registered with ``plan.json``, or the first study)."""
    if (Path(output) / PLAN_NAME).is_file():
        return write_planned_report(output)
    from ccnet.study.first_report import write_first_report

    return write_first_report(output)
