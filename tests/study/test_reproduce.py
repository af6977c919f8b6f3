"""``ccnet reproduce``: the plan, the statistics, the runner's statuses and resuming, and the quick
pipeline end to end (the report's structure, not its numbers)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
from scipy import stats

from ccnet.cli import main
from ccnet.config import Config
from ccnet.study.claims import decide
from ccnet.study.first_report import CLAIMS, PLOTS
from ccnet.study.plan import (
    ABLATIONS,
    VARIANTS,
    PlannedComparison,
    StudySettings,
    experiment_of,
    main_variants,
    plan_record,
    planned_runs,
    run_config,
    select_variants,
    write_plan,
)
from ccnet.study.report import decision_row, memory_lines
from ccnet.study.results import Comparison, RunResult, Summary, read_log
from ccnet.study.runner import check_same_config, run_dir, run_status, train_one
from ccnet.study.stats import holm

FIRST_STUDY = ["loops", "context", "consistency"]


def test_select_variants_by_variant_experiment_and_ablation_names():
    assert select_variants(None) == main_variants() == [
        "loops192_none", "loops192_rcca_r1", "loops192_rcca_r2", "columns_none", "columns_ppm", "columns_aspp",
        "columns_nonlocal", "columns_rcca_r2", "columns_ccl_quadratic", "columns_ccl_piecewise",
        "stability_ccl_quadratic", "stability_ccl_piecewise"]
    assert select_variants(FIRST_STUDY) == [
        "none", "rcca_r1", "rcca_r2", "rcca_r3", "ppm", "aspp", "nonlocal", "ccl_quadratic", "ccl_piecewise"]
    assert select_variants(["two_keys"]) == [f"two_keys_{v}" for v in ("none", "ppm", "aspp", "nonlocal", "rcca_r2")]
    assert select_variants(["loops"]) == ["none", "rcca_r1", "rcca_r2", "rcca_r3"]
    assert select_variants(["ppm", "consistency"]) == ["rcca_r2", "ppm", "ccl_quadratic", "ccl_piecewise"]
    assert select_variants(["ccl_columns"]) == ["columns_rcca_r2", "columns_ccl_quadratic", "columns_ccl_piecewise"]
    with pytest.raises(ValueError, match="'nope': not a variant, experiment or ablation"):
        select_variants(["nope"])


def test_the_plan_gives_each_experiment_its_seeds_and_settings():
    full = StudySettings.full()
    runs = planned_runs(select_variants(["loops192", "stability"]), full)
    assert len(runs) == 3 * 4 + 2 * 30 and runs[:2] == [("loops192_none", 0), ("loops192_rcca_r1", 0)]
    assert planned_runs(["columns_ppm"], full, seeds=(100,)) == [("columns_ppm", 100)]  # a pilot seed
    assert run_config("loops192_none", 0, full).data.synthetic_size == [192, 192]
    stability = run_config("stability_ccl_piecewise", 0, full)
    assert stability.optim.clip_grad_norm is None and stability.data.synthetic_size == [64, 64]
    assert run_config("columns_ccl_piecewise", 0, full).loss.consistency_warmup_iters == 100
    quick = StudySettings.quick()  # a pipeline check keeps its tiny settings and seeds
    assert run_config("loops192_none", 0, quick).data.synthetic_size == [32, 32]
    assert planned_runs(["stability_ccl_quadratic"], quick) == [("stability_ccl_quadratic", 0),
                                                                ("stability_ccl_quadratic", 1)]
    record = plan_record(full)
    assert record["primary"] == ["r1_vs_r0", "r2_vs_r1", "rcca_vs_none", "rcca_vs_ppm", "rcca_vs_aspp",
                                 "ccl_piecewise_vs_off", "piecewise_more_stable"]
    assert all(c["margin"] for e in record["experiments"] for c in e["comparisons"] if c["kind"] == "equivalence")


def test_a_study_folder_planned_differently_is_refused(tmp_path):
    write_plan(tmp_path, StudySettings.full())
    write_plan(tmp_path, StudySettings.full())  # the same plan again: fine
    stored = json.loads((tmp_path / "plan.json").read_text())
    stored["experiments"][0]["seeds"] = [0, 1]
    (tmp_path / "plan.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"plan\.json: this study folder was planned differently"):
        write_plan(tmp_path, StudySettings.full())


def test_every_ablation_row_is_a_variant_and_every_claim_compares_two():
    for ablation in ABLATIONS.values():
        assert all(variant in VARIANTS for _, variant in ablation.rows)
    for claim in CLAIMS:
        assert claim.baseline in VARIANTS and claim.better in VARIANTS and claim.baseline != claim.better


def _flat(config: Config) -> dict:
    out = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def test_variants_differ_from_each_other_only_in_their_own_overrides():
    settings = StudySettings.full()
    base = _flat(run_config("rcca_r2", 0, settings))
    assert base["data.synthetic_size"] == [160, 160] and base["optim.iterations"] == 250
    assert base["model.gamma_init"] == 1.0 and base["optim.head_lr_mult"] == 10.0  # the default job
    for name, variant in VARIANTS.items():
        flat = _flat(run_config(name, 0, settings))
        experiment = experiment_of(name)
        if experiment is not None:  # the experiment's own size, iterations, ...
            own = _flat(run_config("rcca_r2", 0, dataclasses.replace(settings, **dict(experiment.settings))))
            changed = {k for k in flat if flat[k] != own[k]} - {"name"}
        else:
            changed = {k for k in flat if flat[k] != base[k]} - {"name"}
        touched = {o.split("=")[0] for o in variant.overrides}
        assert changed <= touched, (name, changed - touched)
        if variant.cost_as and experiment is None:  # same model and loss as the variant whose cost it shares
            other = _flat(run_config(variant.cost_as, 0, settings))
            assert {k for k in flat if flat[k] != other[k]} == {"name", "data.synthetic_task"}
    assert _flat(run_config("none", 3, settings))["seed"] == 3


def test_comparison_counts_a_difference_only_beyond_the_spread():
    a, b = Summary((0.70, 0.72, 0.71)), Summary((0.90, 0.91, 0.89))
    assert Comparison(a, b).verdict == "higher" and Comparison(b, a).verdict == "lower"
    assert math.isclose(Comparison(a, b).spread, a.sd + b.sd)
    noisy = Summary((0.70, 0.95, 0.80))
    assert Comparison(a, noisy).verdict == "no clear difference"
    assert Comparison(Summary((0.7,)), b).verdict == "undetermined"
    assert Summary(()).text() == "-" and "±" in b.text()


def test_read_log_keeps_the_latest_record_of_a_resumed_run(tmp_path):
    path = tmp_path / "log.jsonl"
    records = [{"iteration": 20, "loss": 2.0}, {"iteration": 40, "loss": 1.0}, {"iteration": 40, "loss": 0.5},
               {"iteration": 40, "type": "eval", "mIoU": 0.3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    log = read_log(path)
    assert [(r["iteration"], r.get("type")) for r in log] == [(20, None), (40, None), (40, "eval")]
    assert log[1]["loss"] == 0.5


def test_a_diverged_run_is_recorded_and_kept(tmp_path, monkeypatch):
    from ccnet.engine import trainer

    def diverge(self):
        logging.getLogger("ccnet.engine.trainer").info("training ccl_quadratic: logged")
        raise FloatingPointError("iteration 7: loss is nan; the last good checkpoint is x")

    monkeypatch.setattr(trainer.Trainer, "fit", diverge)
    path = tmp_path / "run"
    status = train_one(run_config("ccl_quadratic", 0, StudySettings.quick()), path)
    assert status["status"] == "diverged" and "loss is nan" in status["error"]
    assert run_status(path) == "diverged"
    assert "training ccl_quadratic: logged" in (path / "train.log").read_text()  # the run's log, not the console

    def crash(self):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(trainer.Trainer, "fit", crash)
    other = tmp_path / "other"
    assert train_one(run_config("ppm", 0, StudySettings.quick()), other)["status"] == "failed"
    assert run_status(other) == "failed"  # retried on the next invocation
    assert "RuntimeError: out of memory" in (other / "train.log").read_text()


def test_a_run_trained_with_other_settings_is_refused(tmp_path):
    settings = StudySettings.quick()
    path = tmp_path / "run"
    path.mkdir()
    stored = run_config("ppm", 0, settings)
    stored.optim.iterations = 7
    import yaml

    (path / "config.yaml").write_text(yaml.safe_dump(stored.to_dict()))
    with pytest.raises(ValueError, match=r"optim\.iterations=7 .* asks for 2; use another --output"):
        check_same_config(path, run_config("ppm", 0, settings))
    check_same_config(path, stored)


@pytest.mark.slow
def test_quick_study_resumes_an_interrupted_run_skips_finished_ones_and_writes_the_report(tmp_path, capsys):
    from ccnet.engine.trainer import Trainer

    out = tmp_path / "study"
    settings = StudySettings.quick()
    # An interrupted run: stopped after iteration 1 of 2, with a checkpoint and no metrics.
    interrupted = run_dir(out, "rcca_r2", 0)
    Trainer(run_config("rcca_r2", 0, settings), output_dir=interrupted, stop_after=1, progress=False).fit()
    assert run_status(interrupted) == "partial"

    assert main(["reproduce", "--quick", "--output", str(out), "--seeds", "0", "--only", *FIRST_STUDY]) == 0
    printed = capsys.readouterr().out
    assert "rcca_r2 seed 0: resuming" in printed
    iterations = [r["iteration"] for r in map(json.loads, (interrupted / "log.jsonl").read_text().splitlines())
                  if r.get("type") != "eval"]
    assert iterations == [1, 2]  # continued from the checkpoint, not restarted (iteration 1 once)
    paper = select_variants(FIRST_STUDY)
    for variant in paper:
        assert run_status(run_dir(out, variant, 0)) == "done", variant
        assert (run_dir(out, variant, 0) / "config.yaml").is_file()
    finished = {v: (run_dir(out, v, 0) / "metrics.json").stat().st_mtime_ns for v in paper}

    # A second invocation adds a seed to one ablation and keeps every finished run.
    assert main(["reproduce", "--quick", "--output", str(out), "--seeds", "0", "1", "--only", "none", "rcca_r1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": done, kept") == 2 and "rcca_r1 seed 1: done" in printed
    assert {v: (run_dir(out, v, 0) / "metrics.json").stat().st_mtime_ns for v in paper} == finished
    assert run_status(run_dir(out, "ppm", 1)) == "new"  # not asked for

    report = (out / "report.md").read_text()
    # the header names the commands, not this machine's folder
    assert (f"Generated by `ccnet reproduce --output runs/study --seeds 0 --only {' '.join(FIRST_STUDY)} --quick` "
            "and `ccnet reproduce --output runs/study --seeds 0 1 --only none rcca_r1 --quick`") in report
    assert str(tmp_path) not in report
    assert json.loads((out / "study.json").read_text())["seeds"] == [0, 1]
    for heading in ["## The paper's claims", *(f"## {a.title}" for a in ABLATIONS.values() if not a.extra),
                    "## Runs that diverged, failed, did not finish or did not learn the context"]:
        assert heading in report, heading
    claims = report.split("## The paper's claims")[1].split("\n\n")[1].splitlines()
    assert len(claims) == 2 + len(CLAIMS) + 2  # header, rule, claims, stability, FLOPs
    assert all(row.count("|") == 5 for row in claims)
    assert "ppm seed 1: not finished (not started)" in report
    loops = report.split("## Loops of criss-cross attention (R)")[1]
    assert loops.split("\n\n")[2].count("±") >= 4  # R=0 and R=1 with two seeds: mean ± sd
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    cost = json.loads((out / "cost.json").read_text())
    assert set(cost) == set(paper) and cost["nonlocal"]["head_gflops_paper"] > cost["rcca_r2"]["head_gflops_paper"]
    assert "Not trained in this study folder: `ccnet reproduce --only two_keys`" in report
    assert (run_dir(out, "ppm", 0) / "probe.json").is_file()

    # The designed two-key task joins the report once asked for.
    assert main(["reproduce", "--quick", "--output", str(out), "--seeds", "0", "--only", "two_keys_rcca_r2"]) == 0
    report = (out / "report.md").read_text()
    assert "## Context modules on the two-key task" in report
    assert "RCCA (R=2) beats pyramid pooling (PPM) on the two-key task" in report
    assert "two_keys_ppm seed 0: not finished (not started)" in report

    # The same folder with other settings is refused, naming the file.
    assert main(["reproduce", "--quick", "--output", str(out), "--iterations", "3", "--only", "loops"]) == 2
    assert "study.json: this study was made with iterations=2, not 3" in capsys.readouterr().err


def _runs(variant, values, status="done"):
    return [RunResult(variant, seed, status, context_miou=v) for seed, v in enumerate(values)]


def test_the_analysis_decides_planned_comparisons_on_known_results():
    comparisons = [
        PlannedComparison("big", "b beats a", "superiority", "a", "b"),
        PlannedComparison("small", "c beats a", "superiority", "a", "c"),
        PlannedComparison("same", "d matches a", "equivalence", "a", "d", primary=False, margin=0.05),
        PlannedComparison("ceiling", "f beats e", "superiority", "e", "f", primary=False),
        PlannedComparison("stable", "h fails less than g", "failures", "g", "h", outcome="diverged"),
    ]
    runs = {"a": _runs("a", (0.40, 0.45, 0.42)), "b": _runs("b", (0.90, 0.93, 0.91)),
            "c": _runs("c", (0.42, 0.44, 0.46)), "d": _runs("d", (0.41, 0.45, 0.42)),
            "e": _runs("e", (0.95, 0.96, 0.97)), "f": _runs("f", (0.97, 0.98, 0.99)),
            "g": [*_runs("g", [0.1] * 3, "diverged"), RunResult("g", 3, "done")],
            "h": _runs("h", [0.1] * 4)}
    decided = {d.comparison.name: d for d in decide(comparisons, runs)}
    big = decided["big"]
    assert big.difference.differences == pytest.approx((0.50, 0.48, 0.49))
    p_big, p_small, p_stable = big.p, decided["small"].p, decided["stable"].p
    assert p_big == pytest.approx(stats.ttest_rel([0.90, 0.93, 0.91], [0.40, 0.45, 0.42], alternative="greater").pvalue)
    assert p_stable == pytest.approx(stats.fisher_exact([[3, 1], [0, 4]], alternative="greater").pvalue)
    assert [decided[n].p_holm for n in ("big", "small", "stable")] == pytest.approx(holm([p_big, p_small, p_stable]))
    assert big.verdict == "shown" and decided["small"].verdict == "not shown"
    assert decided["stable"].verdict == "not shown"  # 3 of 4 against 0 of 4: p = 0.07
    assert decided["same"].verdict == "equivalent" and math.isnan(decided["same"].p_holm)
    assert decided["ceiling"].verdict == "not tested by this setting"
    assert "s0: +50.0, s1: +48.0, s2: +49.0; mean +49.0" in decision_row(big)


def test_the_memory_claim_comes_from_the_block_benchmark(tmp_path):
    import shutil
    from pathlib import Path

    bench = Path(__file__).parents[2] / "docs" / "benchmarks" / "block" / "bench.json"
    shutil.copy(bench, tmp_path / "block_bench.json")
    text = "\n".join(memory_lines(tmp_path / "block_bench.json"))
    assert "- nchw: forward peak 10.8x less, forward+backward 10.1x less" in text and "84.7% fewer" in text


@pytest.mark.slow
def test_quick_preregistered_study_writes_the_plan_first_and_a_paired_report(tmp_path, capsys, monkeypatch):
    out = tmp_path / "study"
    seen = []
    real = train_one

    def train_after_the_plan(config, path):
        seen.append((out / "plan.json").is_file())
        return real(config, path)

    monkeypatch.setattr("ccnet.study.runner.train_one", train_after_the_plan)
    assert main(["reproduce", "--quick", "--output", str(out)]) == 0
    assert seen and all(seen)  # the plan existed before the first run
    plan = json.loads((out / "plan.json").read_text())
    assert plan == json.loads(json.dumps(plan_record(StudySettings.quick())))
    for variant in main_variants():
        assert run_status(run_dir(out, variant, 1)) == "done", variant
    report = (out / "report.md").read_text()
    rows = report.split("## The paper's claims")[1].split("\n\n")[1].splitlines()
    comparisons = [c for e in plan["experiments"] for c in e["comparisons"]]
    assert len(rows) == 2 + len(comparisons) and all(row.count("|") == 9 for row in rows)
    # the report's numbers recompute from the run files: the first comparison, R=1 minus R=0, by seed
    first = comparisons[0]
    values = {v: [json.loads((run_dir(out, v, s) / "metrics.json").read_text())["iou"][4:7] for s in (0, 1)]
              for v in (first["baseline"], first["better"])}
    def mean(iou):  # classes absent from the scenes (None) do not count, as in metrics.json's mIoU
        present = [v for v in iou if v is not None]
        return sum(present) / len(present)

    differences = [mean(b) - mean(a) for a, b in zip(values[first["baseline"]], values[first["better"]], strict=True)]
    assert f"s0: {100 * differences[0]:+.1f}, s1: {100 * differences[1]:+.1f}" in rows[2]
    for experiment in plan["experiments"]:
        assert f"## {experiment['title']}" in report
    assert "## Pilots (seeds 100 and up" in report
    assert (out / "verdicts.md").read_text().startswith("| claim | paper | measured")
    for name in ("forest.png", "context_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "copy the `bench.json` of `ccnet bench block`" in report
    # the columns task's properties hold on the scenes this study trained on
    from ccnet.data.synthetic import CONTEXT_CLASSES
    from ccnet.engine.build import build_val_dataset

    scenes = build_val_dataset(run_config("columns_rcca_r2", 0, StudySettings.quick()))
    for index in range(len(scenes)):
        assert sorted(cls for *_, cls in scenes.layout(index)["keys"]) == sorted(CONTEXT_CLASSES)
