"""``ccnet reproduce``: the plan, the statistics, the runner's statuses and resuming, and the quick
pipeline end to end (the report's structure, not its numbers)."""

from __future__ import annotations

import json
import math

import pytest

from ccnet.cli import main
from ccnet.config import Config
from ccnet.study.plan import ABLATIONS, VARIANTS, StudySettings, main_variants, run_config, select_variants
from ccnet.study.report import CLAIMS, PLOTS
from ccnet.study.results import Comparison, Summary, read_log
from ccnet.study.runner import check_same_config, run_dir, run_status, train_one


def test_select_variants_by_variant_and_ablation_names():
    assert select_variants(None) == main_variants() == [
        "none", "rcca_r1", "rcca_r2", "rcca_r3", "ppm", "aspp", "nonlocal", "ccl_quadratic", "ccl_piecewise"]
    assert select_variants(["two_keys"]) == [f"two_keys_{v}" for v in ("none", "ppm", "aspp", "nonlocal", "rcca_r2")]
    assert select_variants(["loops"]) == ["none", "rcca_r1", "rcca_r2", "rcca_r3"]
    assert select_variants(["ppm", "consistency"]) == ["rcca_r2", "ppm", "ccl_quadratic", "ccl_piecewise"]
    with pytest.raises(ValueError, match="'nope': not a variant or ablation"):
        select_variants(["nope"])


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
        changed = {k for k in flat if flat[k] != base[k]} - {"name"}
        touched = {o.split("=")[0] for o in variant.overrides}
        assert changed <= touched, (name, changed - touched)
        if variant.cost_as:  # same model and loss as the variant whose measured cost it shares
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
        raise FloatingPointError("iteration 7: loss is nan; the last good checkpoint is x")

    monkeypatch.setattr(trainer.Trainer, "fit", diverge)
    path = tmp_path / "run"
    status = train_one(run_config("ccl_quadratic", 0, StudySettings.quick()), path)
    assert status["status"] == "diverged" and "loss is nan" in status["error"]
    assert run_status(path) == "diverged"

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

    assert main(["reproduce", "--quick", "--output", str(out), "--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "rcca_r2 seed 0: resuming" in printed
    iterations = [r["iteration"] for r in map(json.loads, (interrupted / "log.jsonl").read_text().splitlines())
                  if r.get("type") != "eval"]
    assert iterations == [1, 2]  # continued from the checkpoint, not restarted (iteration 1 once)
    paper = main_variants()
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
    assert (f"Generated by `ccnet reproduce --output {out} --seeds 0 --quick` and "
            f"`ccnet reproduce --output {out} --seeds 0 1 --only none rcca_r1 --quick`") in report
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
    assert main(["reproduce", "--quick", "--output", str(out), "--iterations", "3"]) == 2
    assert "study.json: this study was made with iterations=2, not 3" in capsys.readouterr().err
