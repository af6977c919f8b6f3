"""The study's figures (matplotlib, PNG): what the reports show next to their tables.

Pre-registered study: ``forest.png`` (each planned comparison's per-seed differences, mean and 95%
interval) and ``context_curves.png`` (context-class IoU during training, per experiment). First
study: ``miou.png``, ``cost.png``, ``curves.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccnet.study.results import RunResult, Summary, curve_iterations, curve_values

if TYPE_CHECKING:
    from ccnet.study.claims import Decision
    from ccnet.study.first_report import Study


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the report's plots need matplotlib: pip install 'ccnet-pytorch[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sd_pct(summary: Summary) -> float:
    """The standard deviation in percent for an error bar (0 for a single run)."""
    return 0.0 if math.isnan(summary.sd) else 100 * summary.sd


def _mean_sd_band(ax: Any, iterations: list[int], summaries: list[Any], label: str) -> None:
    """One curve of means (in %) with a shaded ± sd band in the curve's colour."""
    means = [100 * s.mean for s in summaries]
    sds = [_sd_pct(s) for s in summaries]
    line = ax.plot(iterations, means, marker="o", markersize=3, label=label)[0]
    ax.fill_between(iterations, [m - d for m, d in zip(means, sds, strict=True)],
                    [m + d for m, d in zip(means, sds, strict=True)], color=line.get_color(), alpha=0.15)


# -- the pre-registered study ----------------------------------------------------------------------
def plot_forest(decisions: Sequence[Decision], path: Path) -> None:
    """One row per paired comparison: every seed's difference (dots), the mean and its 95% interval
    (bar), 0 and, for an equivalence claim, the margin (shaded); points of context-class IoU."""
    plt = _pyplot()
    rows = [d for d in decisions if d.difference is not None]
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(rows), 1) + 1.4))
    for y, d in enumerate(reversed(rows)):
        diff = d.difference
        assert diff is not None
        ax.scatter([100 * v for v in diff.differences], [y] * diff.n, color="tab:blue", s=14, zorder=3)
        low, high = diff.interval
        if diff.n and not math.isnan(low):
            ax.errorbar([100 * diff.mean], [y], xerr=[[100 * (diff.mean - low)], [100 * (high - diff.mean)]],
                        fmt="o", color="black", capsize=4, zorder=4)
        elif diff.n:
            ax.scatter([100 * diff.mean], [y], color="black", zorder=4)
        if d.comparison.kind == "equivalence" and d.comparison.margin:
            m = 100 * d.comparison.margin
            ax.fill_betweenx([y - 0.4, y + 0.4], -m, m, color="tab:green", alpha=0.15)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [f"{d.comparison.name}: {d.verdict}" for d in reversed(rows)], fontsize=8)
    ax.set_xlabel("paired difference, better minus baseline (points of context-class IoU)")
    ax.grid(axis="x", alpha=0.3)
    _save(plt, fig, path, "paired differences: dots = seeds, black = mean and 95% t interval")


def plot_context_curves(experiments: Sequence[Mapping[str, Any]], runs: Mapping[str, Sequence[RunResult]],
                        path: Path) -> None:
    """Context-class IoU against iteration (mean ± sd over finished seeds), one panel per experiment
    that evaluated during training."""
    plt = _pyplot()
    shown = [e for e in experiments if e["settings"].get("eval_interval")]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(5.2 * max(len(shown), 1), 4.0), squeeze=False)
    for ax, experiment in zip(axes[0], shown, strict=False):
        for row in experiment["rows"]:
            variant_runs = list(runs.get(row["variant"], ()))
            iterations = curve_iterations(variant_runs)
            if not iterations:
                continue
            summaries = [curve_values(variant_runs, it, 2) for it in iterations]
            _mean_sd_band(ax, iterations, summaries, row["label"])
        ax.set_xlabel("iteration")
        ax.set_ylabel("context-class IoU (%)")
        ax.set_title(experiment["title"], fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    _save(plt, fig, path, "context-class IoU during training (mean ± sd over finished seeds)")


# -- the first study ---------------------------------------------------------------------------------
def plot_miou(study: Study, path: Path) -> None:
    """mIoU per variant, one panel per ablation: every seed as a dot, mean ± sd as a bar."""
    plt = _pyplot()
    ablations = study.ablations
    fig, axes = plt.subplots(1, len(ablations), figsize=(5.2 * len(ablations), 4.2), squeeze=False)
    for ax, ablation in zip(axes[0], ablations.values(), strict=True):
        for x, (_, variant) in enumerate(ablation.rows):
            summary = study.summary(variant)
            seeds = [100 * r.miou for r in study.runs[variant] if r.done]
            ax.scatter([x] * len(seeds), seeds, color="tab:blue", s=18, zorder=3)
            if summary.n:
                ax.errorbar([x + 0.15], [100 * summary.mean], yerr=[_sd_pct(summary)], fmt="o", color="black",
                            capsize=4)
        ax.set_xticks(range(len(ablation.rows)), [label for label, _ in ablation.rows], rotation=20)
        ax.set_ylabel("mIoU (%)")
        ax.set_title(ablation.title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, path, "mIoU per variant: dots = seeds, black = mean ± sd")


def plot_cost(study: Study, path: Path) -> None:
    """Accuracy against cost: mean mIoU (± sd) against step time and head GFLOPs (paper scale)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, xlabel in ((axes[0], "step_ms", "training step (ms, round-robin, study size)"),
                            (axes[1], "head_gflops_paper", "head GFLOPs at the paper's scale (97x97, 512 ch)")):
        for variant in study.runs:
            summary, cost = study.summary(variant), study.cost(variant, key)
            if not summary.n or math.isnan(cost):
                continue
            ax.errorbar([cost], [100 * summary.mean], yerr=[_sd_pct(summary)], fmt="o", capsize=3)
            ax.annotate(variant, (cost, 100 * summary.mean), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    _save(plt, fig, path, "accuracy against cost (mean ± sd over seeds)")


def plot_curves(study: Study, path: Path) -> None:
    """Validation mIoU against iteration, mean ± sd over seeds, one panel per ablation."""
    plt = _pyplot()
    ablations = study.ablations
    fig, axes = plt.subplots(1, len(ablations), figsize=(5.2 * len(ablations), 4.0), squeeze=False)
    for ax, ablation in zip(axes[0], ablations.values(), strict=True):
        for label, variant in ablation.rows:
            runs = study.runs[variant]
            iterations = curve_iterations(runs)
            if not iterations:
                continue
            summaries = [curve_values(runs, iteration, 1) for iteration in iterations]
            _mean_sd_band(ax, iterations, summaries, label)
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation mIoU (%)")
        ax.set_title(ablation.title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    _save(plt, fig, path, "validation mIoU during training (mean ± sd over seeds)")
