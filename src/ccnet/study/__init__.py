"""``ccnet reproduce``: the paper's ablations on the synthetic benchmark, trained one run at a
time, resumably, and a report generated from the runs' own files.

``plan`` (the variants and ablations), ``runner`` (training, resuming, statuses), ``cost``
(step time, peak memory, head FLOPs), ``results`` (reading runs back, statistics), ``report``
(report.md and plots).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ccnet.errors import InputError
from ccnet.files import atomic_write_text
from ccnet.study.plan import (
    ABLATIONS,
    EXPERIMENTS,
    VARIANTS,
    StudySettings,
    planned_runs,
    run_config,
    select_variants,
    write_plan,
)
from ccnet.study.runner import read_json, run_study, write_settings

__all__ = ["ABLATIONS", "EXPERIMENTS", "VARIANTS", "StudySettings", "reproduce"]


def reproduce(
    output: str | Path,
    settings: StudySettings,
    only: list[str] | None = None,
    command: str = "ccnet reproduce",
    quick: bool = False,
    seeds_given: bool = False,
) -> dict[tuple[str, int], str]:
    """Measure the variants' cost (once), train every run not finished yet, write the report.
    Returns the status of each run of this invocation (``done``, ``diverged``, ``failed``).
    ``quick``: a pipeline check; the cost is timed once and peak memory is not profiled.
    ``seeds_given``: ``settings.seeds`` came from ``--seeds`` and replace every experiment's own
    seeds (pilots); otherwise the plan's experiments train on their own seeds. Progress goes to the
    ``ccnet.study`` loggers (INFO)."""
    from ccnet.study.cost import measure_costs
    from ccnet.study.report import write_report

    output = Path(output)
    variants = select_variants(only)
    own_seeds = settings.seeds if seeds_given else None
    runs = planned_runs(variants, settings, own_seeds)
    if any(v in e.variants for e in EXPERIMENTS.values() for v in variants):
        write_plan(output, settings)  # fixed before any run of the pre-registered study
    write_settings(output, dataclasses.replace(settings, seeds=tuple(sorted({s for _, s in runs}))), command)
    cost_path = output / "cost.json"
    costs = read_json(cost_path) or {}
    measured = [name for name, variant in VARIANTS.items() if variant.cost_as is None]
    if set(measured) - set(costs):  # all of them in one round-robin measurement
        configs = {name: run_config(name, 0, settings) for name in measured}
        costs = measure_costs(configs, repeats=1 if quick else 5, memory=not quick)
        atomic_write_text(cost_path, json.dumps(costs, indent=2))
    statuses = run_study(output, variants, settings, runs=runs)
    write_report(output)
    return statuses


def with_overrides(settings: StudySettings, seeds: list[int] | None, iterations: int | None) -> StudySettings:
    """``settings`` with the command line's ``--seeds`` / ``--iterations``."""
    changes: dict[str, object] = {}
    if seeds:
        changes["seeds"] = tuple(dict.fromkeys(seeds))
    if iterations is not None:
        if iterations < 1:
            raise InputError(f"--iterations must be >= 1, got {iterations}")
        changes["iterations"] = iterations
    return dataclasses.replace(settings, **changes)
