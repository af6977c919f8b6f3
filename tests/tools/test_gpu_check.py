"""``make gpu-check`` proven on a CPU: a dry run of every part at tiny sizes, failures of every
kind reported while the rest runs, the time budget, and the wheel installation step."""

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import gpu_check
import gpu_check_report
import pytest

PARTS = ["setup", "environment", "compile-check", "triton-tests", "cuda-tests", "bench-float32", "bench-bfloat16",
         "bench-model", "train", "evaluate", "torchrun"]


def _summary(out: Path) -> dict:
    return json.loads((out / "gpu-check.json").read_text())


@pytest.mark.slow
def test_dry_run_passes_every_part_and_reports(tmp_path, capsys):
    dest, work = tmp_path / "out", tmp_path / "work"
    assert gpu_check.main(["--device", "cpu", "--quick", "--output", str(dest), "--work", str(work)]) == 0
    summary = _summary(dest)
    parts = {p["name"]: p for p in summary["parts"]}
    assert list(parts) == PARTS and all(p["status"] == "pass" for p in parts.values()), [
        (p["name"], p.get("reason")) for p in summary["parts"] if p["status"] != "pass"]
    # $OUT: three files (the GPU machine brings back at most 8, two folders deep); the rest archived.
    assert sorted(p.name for p in dest.iterdir()) == ["gpu-check-files.tar.gz", "gpu-check.json", "gpu-check.md"]
    with tarfile.open(dest / "gpu-check-files.tar.gz") as archive:
        members = set(archive.getnames())
    assert {f"results/{p['log']}" for p in parts.values()} <= members
    assert {"results/bench/float32/bench.json", "results/compile/triton-compile.md",
            "results/train/log.jsonl"} <= members
    assert summary["archive"]["files"] == len(members) and summary["archive"]["left_out"] == []
    # The budget covers every part's limit, and on CUDA that fits one 10-minute command.
    assert summary["budget_s"] == sum(p["timeout_s"] for p in parts.values())
    cuda = gpu_check.plan(gpu_check.Context(out=tmp_path, work=tmp_path, device="cuda", quick=False, wheels=tmp_path,
                                            site=tmp_path, env={}))
    assert sum(p.timeout for p in cuda) <= gpu_check.GPU_COMMAND_SECONDS - 60
    assert [p.name for p in cuda].index("triton-tests") < [p.name for p in cuda].index("cuda-tests")
    out = work / "results"
    assert parts["compile-check"]["details"]["problems"] == []
    # The CUDA tests were collected and skipped with their reason (no GPU here); the Triton tests first.
    tests = parts["cuda-tests"]["details"]
    assert tests["passed"] == 0 and tests["skipped"] > 20
    assert all("needs a CUDA GPU" in reason for reason in tests["skip_reasons"])
    assert parts["triton-tests"]["details"]["files"] == [gpu_check.TRITON_TESTS]
    assert gpu_check.TRITON_TESTS not in tests["files"]
    # The benchmarks' files, the paper's claims, the model variants.
    for dtype in ("float32", "bfloat16"):
        bench = parts[f"bench-{dtype}"]["details"]
        assert (out / "bench" / dtype / "bench.json").is_file() and (out / "bench" / dtype / "bench.png").is_file()
        assert bench["claims"][0]["dtype"] == dtype and bench["claims"][0]["flops_saved"] > 0
    assert {r["variant"] for r in parts["bench-model"]["details"]["rows"]} == {"nchw", "nchw+bf16"}
    # Training: finite, decreasing loss; evaluation agrees; torchrun joined a (gloo) process group.
    train = parts["train"]["details"]
    assert train["last_third_loss"] < train["first_third_loss"]
    assert (out / "train" / "log.jsonl").is_file() and list((out / "train" / "predictions").glob("*.png"))
    assert parts["evaluate"]["details"]["miou"] == pytest.approx(train["miou"], abs=0.01)
    assert "(gloo)" in parts["torchrun"]["details"]["banner"]
    markdown = (out / "gpu-check.md").read_text()
    assert "11 of 11 parts passed" in markdown and "RCCA (R=2) against one non-local block" in markdown
    assert "| torchrun | torchrun --nproc_per_node 1" in markdown
    assert "no `triton` candidate" in markdown
    capsys.readouterr()


def _alive(pid: int, wait: float = 10.0) -> bool:
    """Whether ``pid`` still runs ``wait`` seconds from now (a killed process takes a moment to go)."""
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + wait
    while True:
        try:
            if "\nState:\tZ" in status.read_text():  # killed, waiting to be reaped
                return False
        except FileNotFoundError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


def test_failures_are_reported_and_the_rest_still_runs(tmp_path, capsys):
    out = tmp_path / "out"
    start = time.monotonic()
    code = gpu_check.main(["--device", "cpu", "--quick", "--output", str(out), "--work", str(tmp_path / "work"),
                           "--only", "setup,cuda-tests,bench-model,train,evaluate,torchrun",
                           "--inject", "cuda-tests=import", "--inject", "bench-model=oom", "--inject", "train=crash",
                           "--inject", "torchrun=timeout"])
    assert code == 1
    assert time.monotonic() - start < 60
    parts = {p["name"]: p for p in _summary(out)["parts"]}
    assert {n: p["status"] for n, p in parts.items()} == {
        "setup": "pass", "cuda-tests": "fail", "bench-model": "fail", "train": "fail", "evaluate": "fail",
        "torchrun": "timeout"}
    assert "ModuleNotFoundError: No module named 'ccnet_gpu_check_missing_module'" in parts["cuda-tests"]["reason"]
    assert parts["bench-model"]["reason"].startswith("MemoryError: CUDA out of memory. Tried to allocate")
    assert parts["train"]["reason"] == "killed by SIGSEGV"
    assert parts["evaluate"]["reason"] == "no checkpoint to evaluate: the train part did not finish"
    assert parts["torchrun"]["reason"].startswith("still running after 2 s")
    # The timed-out command's own children went with it.
    started = re.search(r"started (\d+)", (tmp_path / "work" / "results" / "logs" / "torchrun.log").read_text())
    assert started and not _alive(int(started.group(1)))
    markdown = (out / "gpu-check.md").read_text()
    assert "1 of 6 parts passed" in markdown and "| train | default job" in markdown
    assert "Last lines of logs/cuda-tests.log" in markdown
    output = capsys.readouterr().out
    assert "[6/6] torchrun: timeout" in output


def test_parts_beyond_the_budget_are_skipped(tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_check.main(["--device", "cpu", "--output", str(out), "--only", "setup,environment,cuda-tests",
                           "--inject", "environment=timeout", "--budget", "6"]) == 1
    statuses = {p["name"]: (p["status"], p.get("reason", "")) for p in _summary(out)["parts"]}
    assert statuses["environment"][0] == "timeout"
    assert statuses["cuda-tests"][0] == "skipped" and "out of time" in statuses["cuda-tests"][1]
    capsys.readouterr()


def test_unknown_parts_and_kinds_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--output", str(tmp_path), "--only", "nowhere"])
    with pytest.raises(SystemExit):
        gpu_check.main(["--output", str(tmp_path), "--inject", "train=meteor"])
    err = capsys.readouterr().err
    assert "unknown part(s) nowhere" in err and "--inject train=meteor: parts are setup" in err


def _setup_context(tmp_path, wheels):
    ctx = gpu_check.Context(out=tmp_path / "out", work=tmp_path / "work", device="cpu", quick=True, wheels=wheels,
                            site=tmp_path / "site", env=gpu_check.base_env())
    ctx.out.mkdir(parents=True)
    runner = gpu_check.Runner(tmp_path / "setup.log", time.monotonic() + 120, ctx.env)
    return ctx, runner


def test_setup_installs_the_wheels_and_later_commands_import_them(tmp_path, make_wheel, monkeypatch):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinywheelpkg", "1.0", requires=["numpy", "typing", "tinyhelper>=2"])
    make_wheel(wheels, "tinyhelper", "2.1")
    monkeypatch.setattr(gpu_check, "REQUIRED_MODULES", (*gpu_check.REQUIRED_MODULES, "tinywheelpkg"))
    ctx, runner = _setup_context(tmp_path, wheels)
    details = gpu_check.part_setup(ctx)(runner)
    assert details["installed"] and details["had_to_install"] == ["tinywheelpkg"]
    assert details["unmet_requirements"] == [] and details["how"].startswith("pip install --no-index --no-deps")
    assert ctx.env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "site")
    result = subprocess.run([sys.executable, "-c", "import tinywheelpkg, tinyhelper; print(tinywheelpkg.VERSION)"],
                            env=ctx.env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1.0"


def test_setup_reports_an_unmet_requirement_and_a_missing_folder(tmp_path, make_wheel, monkeypatch):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinywheelpkg", "1.0", requires=["no-such-distribution-anywhere>=1"])
    monkeypatch.setattr(gpu_check, "REQUIRED_MODULES", ("tinywheelpkg",))
    ctx, runner = _setup_context(tmp_path, wheels)
    with pytest.raises(gpu_check.PartFailed, match=r"1 requirement\(s\) unmet: tinywheelpkg requires "
                                                   r"no-such-distribution-anywhere>=1"):
        gpu_check.part_setup(ctx)(runner)
    ctx, runner = _setup_context(tmp_path / "again", tmp_path / "nothing-here")
    with pytest.raises(gpu_check.PartFailed, match=r"cannot import tinywheelpkg and .* holds no wheels .*make "
                                                   r"device-wheels"):
        gpu_check.part_setup(ctx)(runner)


def test_setup_installs_nothing_when_everything_imports(tmp_path):
    ctx, runner = _setup_context(tmp_path, tmp_path / "no-wheels")
    assert gpu_check.part_setup(ctx)(runner) == {"installed": False,
                                                 "note": "every dependency importable: nothing installed"}


def test_failure_reason_picks_the_error_line():
    log = "step 1\nTraceback (most recent call last):\n  File x\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    assert gpu_check.failure_reason(log, 1) == "torch.OutOfMemoryError: CUDA out of memory. (exit status 1)"
    assert gpu_check.failure_reason("ccnet train: error: config key 'x' unknown\n", 2) == (
        "ccnet train: error: config key 'x' unknown (exit status 2)")
    assert gpu_check.failure_reason("", -9) == "killed by SIGKILL"


def test_op_goals_put_the_triton_roofline_next_to_the_measured_time():
    import triton_roofline

    timing = {"forward_ms": 1.0, "forward_backward_ms": 4.0}
    row = {"batch": 8, "channels": 512, "qk_channels": 64, "height": 97, "width": 97, "dtype": "bfloat16",
           "ops": {"triton": dict(timing), "mmcv": {"forward_ms": 3.0, "forward_backward_ms": 12.0}}}
    goals = gpu_check.op_goals(row)
    expected = triton_roofline.roofline_ms(8, 64, 512, 97, 97, "bfloat16")["forward_backward_ms"]
    assert goals["roofline_forward_backward_ms"] == expected
    assert goals["roofline_fraction"] == expected / 4.0
    assert "roofline_fraction" not in gpu_check.op_goals({**row, "dtype": "float64"})
    part = {"name": "bench-bfloat16", "status": "pass", "details": {
        "matmul_gflops": 1.0, "markdown": "", "claims": [], "op": [{**row, "layout": "nchw", "goals": goals}]}}
    text = "\n".join(gpu_check_report.part_markdown(part))
    assert f"measured 4.000 ms against a roofline of {expected:.3f} ms on the H200" in text
