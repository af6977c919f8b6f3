"""Reading the runs' own files back, and the statistics the report states.

Everything the report says comes from files the runs wrote: ``metrics.json`` (final scores),
``log.jsonl`` (training and evaluation records; on a resumed run the records between the last
checkpoint and the interruption appear twice, and the later one wins), ``status.json``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccnet.data.synthetic import BACKGROUND, CONTEXT_CLASSES, LOCAL_CLASSES
from ccnet.study.runner import read_json, run_dir, run_status

# A run "did not learn the context" when its grey objects' classes (decided by the distant key)
# stay near a guess: without any context module they end at ~40-45 IoU, solved runs at ~93.
CONTEXT_LEARNED_IOU = 0.60
# A context class counts as solved at this IoU (solved runs reach ~93; some runs solve one or two of
# the three classes and stay near a guess on the others).
CLASS_SOLVED_IOU = 0.80


@dataclass
class RunResult:
    """One run as the report sees it; scores are fractions in [0, 1]."""

    variant: str
    seed: int
    status: str  # done, diverged, failed, partial, new
    miou: float = math.nan
    context_miou: float = math.nan
    local_miou: float = math.nan
    iou: list[float] = field(default_factory=list)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, mIoU, context mIoU)
    step_ms: float = math.nan  # median logged time per training step
    train_s: float = math.nan  # sum of the logged step times
    max_grad_norm: float = math.nan  # largest logged gradient norm (before clipping)
    one_hop_accuracy: float = math.nan  # grey pixels on the key's rows/columns (ccnet.study.probe)
    two_hops_accuracy: float = math.nan  # grey pixels off them
    error: str = ""
    threads: int | None = None  # CPU threads it was trained with (status.json)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def context_learned(self) -> bool:
        return self.done and self.context_miou >= CONTEXT_LEARNED_IOU

    @property
    def context_classes_solved(self) -> int:
        """How many of the three context classes reach :data:`CLASS_SOLVED_IOU`."""
        return sum(1 for k in CONTEXT_CLASSES if k < len(self.iou) and self.iou[k] >= CLASS_SOLVED_IOU)


def _mean_iou(iou: list[float | None], classes: tuple[int, ...]) -> float:
    # a class absent from the validation scenes has no IoU (None in metrics.json, nan here): it does not count
    values = [iou[k] for k in classes if k < len(iou) and iou[k] is not None and not math.isnan(iou[k])]
    return sum(values) / len(values) if values else math.nan


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Records of ``log.jsonl``, one per (kind, iteration), the latest written winning."""
    if not path.is_file():
        return []
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record.get("type", "train"), int(record["iteration"])] = record
    return sorted(records.values(), key=lambda r: (r["iteration"], r.get("type") == "eval"))


def load_run(output: Path, variant: str, seed: int) -> RunResult:
    path = run_dir(output, variant, seed)
    result = RunResult(variant, seed, run_status(path))
    status = read_json(path / "status.json") or {}
    result.error = status.get("error", "")
    result.threads = status.get("threads")
    records = read_log(path / "log.jsonl")
    train = [r for r in records if r.get("type", "train") != "eval"]
    if train:
        result.step_ms = 1e3 * statistics.median(r["time_per_iter"] for r in train)
        previous = 0
        total = 0.0
        for r in train:
            total += r["time_per_iter"] * (r["iteration"] - previous)
            previous = r["iteration"]
        result.train_s = total
        norms = [r["grad_norm"] for r in train if "grad_norm" in r]
        result.max_grad_norm = max(norms) if norms else math.nan
    if result.done:
        metrics = read_json(path / "metrics.json") or {}
        result.iou = [math.nan if v is None else v for v in metrics.get("iou", [])]
        result.miou = metrics.get("miou", math.nan)
        result.context_miou = _mean_iou(result.iou, CONTEXT_CLASSES)
        result.local_miou = _mean_iou(result.iou, (BACKGROUND, *LOCAL_CLASSES))
        probe = read_json(path / "probe.json") or {}
        result.one_hop_accuracy = _number(probe.get("one_hop_accuracy"))
        result.two_hops_accuracy = _number(probe.get("two_hops_accuracy"))
    result.curve = [(r["iteration"], r["mIoU"], _mean_iou(r.get("iou", []), CONTEXT_CLASSES))
                    for r in records if r.get("type") == "eval"]
    return result


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, range and count of one metric over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        if not self.values:
            return "-"
        if self.n < 2:
            return f"{scale * self.mean:.{digits}f} (1 run)"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.sd:.{digits}f}"


def summarize(runs: list[RunResult], metric: str) -> Summary:
    return Summary(tuple(getattr(r, metric) for r in runs if r.done and not math.isnan(getattr(r, metric))))


@dataclass(frozen=True)
class Comparison:
    """``b`` against ``a``: the difference of means, and whether it exceeds the spread (the two
    standard deviations added: the mean ± sd intervals do not overlap)."""

    a: Summary
    b: Summary

    @property
    def diff(self) -> float:
        return self.b.mean - self.a.mean

    @property
    def spread(self) -> float:
        return self.a.sd + self.b.sd

    @property
    def verdict(self) -> str:
        """``higher``, ``lower``, ``no clear difference`` or ``undetermined`` (under 2 runs each)."""
        if self.a.n < 2 or self.b.n < 2:
            return "undetermined"
        if abs(self.diff) <= self.spread:
            return "no clear difference"
        return "higher" if self.diff > 0 else "lower"

    def text(self) -> str:
        if self.verdict == "undetermined":
            return f"{100 * self.diff:+.1f} (too few runs to judge)"
        return f"{100 * self.diff:+.1f} (spread {100 * self.spread:.1f}): {self.verdict}"


def curve_values(runs: list[RunResult], iteration: int, index: int) -> Summary:
    """Evaluation ``index`` (1: mIoU, 2: context mIoU) at ``iteration`` over the finished runs."""
    values = [point[index] for run in runs if run.done for point in run.curve
              if point[0] == iteration and not math.isnan(point[index])]
    return Summary(tuple(values))


def curve_iterations(runs: list[RunResult]) -> list[int]:
    """The iterations at which the finished runs were evaluated."""
    return sorted({point[0] for run in runs if run.done for point in run.curve})
