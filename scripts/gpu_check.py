"""``make gpu-check``: what the project needs to know from a GPU, in one short command.

Runs, in this order, each part in subprocesses with a time limit of its own, each reported
pass / fail / timeout, none stopping the rest (the whole within ``--budget`` seconds, by default
the sum of the parts' limits, which on CUDA fits one 10-minute command with a minute to spare):

  setup          install ``.device-wheels/`` (``make device-wheels``) into the work folder with
                 ``pip install --no-index --no-deps --target`` when ccnet's dependencies are not
                 importable, and check every wheel's requirements against this interpreter
  environment    the ``nvidia-smi`` line; Python, torch, CUDA, cuDNN, NCCL, Triton versions; the GPU
  compile-check  scripts/triton_compile_check.py for sm_90 on the Triton tests' shapes, 16 compiles
                 at a time: registers and spills from this machine's Triton, and its cache warmed
  triton-tests   ``pytest -m cuda`` of the fused Triton kernels' tests, first among the tests and
                 with a limit that covers a cold compile of every kernel
  cuda-tests     ``pytest -m cuda`` (tests/cuda and every other test marked ``cuda``)
  bench-float32  ``ccnet bench op block`` in float32: the op at 1x512x97x97 and 8x512x97x97 (query/
                 key 64), RCCA (R=2) against non-local at 97x97, 512 channels (the paper's claims)
  bench-bfloat16 the same in bfloat16
  bench-model    ``ccnet bench model``: CCNet-R101 inference and a training step at 769x769, batch
                 8, with and without AMP (float16), NCHW and channels-last
  train          the default job for 100 iterations with ``amp=fp16``: loss finite and decreasing
  evaluate       ``ccnet evaluate`` of that run's checkpoint: the training's own final mIoU again
  torchrun       ``torchrun --nproc_per_node 1`` training: DDP and SyncBatchNorm over NCCL

Everything is written into a work folder (``--work``, default a temporary one): ``results/``
holds ``logs/<part>.log``, ``bench/<float32|bfloat16|model>/bench.{json,md,png}``, ``train/`` and
``torchrun/`` (logs, metrics, prediction strips), ``compile/``; checkpoints stay beside it. Into
``--output`` (default ``$OUT``, else ``gpu-check-out/``) go three files, within the GPU machine's
limit of 8 files brought back: ``gpu-check.md``, ``gpu-check.json`` and ``gpu-check-files.tar.gz``
(``results/``, files over 8 MB left out and listed), all rewritten after every part, so a check
killed from outside still leaves what it had. The parts return data; ``gpu-check.md`` is rendered
from it by ``scripts/gpu_check_report.py``, one function per part. pytest runs with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``: the machine's own plugins stay out of the CUDA tests.

``--device cpu --quick`` runs every part end-to-end at tiny sizes on a CPU: ``make test`` does,
so the orchestration, the checks and the report are proven before a GPU is seen. The exit status
is 0 when every part passed, 1 otherwise. Only the standard library is imported here: a broken
torch, a CUDA error or a hang shows up as that part's failure, never as this script's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import device_wheels
from gpu_check_report import markdown

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# What ccnet and its CUDA tests import; all importable means there is nothing to install.
REQUIRED_MODULES = ("torch", "numpy", "PIL", "yaml", "tqdm", "tensorboard", "safetensors", "cv2", "albumentations",
                    "scipy", "pydantic", "cityscapesscripts", "matplotlib", "pytest", "hypothesis")
MIN_PART_SECONDS = 5.0  # a part that would get less than this of the budget is skipped
# --inject PART=KIND replaces a part with a command failing that way (to prove the failure handling).
INJECTED = {
    "import": "import ccnet_gpu_check_missing_module",
    "oom": "raise MemoryError('CUDA out of memory. Tried to allocate 80.00 GiB (injected by gpu_check --inject)')",
    "crash": "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    "timeout": ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
                "time.sleep(3600)']); print('started', child.pid, flush=True); time.sleep(3600)"),
}
INJECTED_TIMEOUT_S = 2.0
# The GPU machine's limit on one command (README, "On a GPU"): every part's limit together stays a
# minute under it, for the machine's start and the transfers.
GPU_COMMAND_SECONDS = 600
ARCHIVE = "gpu-check-files.tar.gz"
ARCHIVE_FILE_LIMIT = 8 * 2**20  # the machine brings back files of at most 16 MB
TRITON_TESTS = "tests/ops/test_criss_cross_triton.py"


class PartFailed(Exception):
    """A part's command failed or its results are wrong; the message says which and why."""


class PartTimedOut(Exception):
    """A part's command ran past the part's time limit and was killed."""


# -- running commands -------------------------------------------------------------------------------
def failure_reason(output: str, returncode: int) -> str:
    """One line saying why a command failed: the signal, CUDA out of memory, or its last error line."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    error = re.compile(r"^([\w.]+(Error|Exception|Interrupt|Exit)\b|[\w.-]+( [\w.-]+)?: error:|FAILED |ERROR )")
    errors = [line for line in lines if error.match(line)]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    if re.search(r"out of memory|OutOfMemoryError", output, re.IGNORECASE) and "out of memory" not in last.lower():
        last = f"out of memory: {last}"
    return f"{last[:300]} (exit status {returncode})"


def _kill_group(process: subprocess.Popen) -> None:
    """Terminate the command and everything it started (its own process group), then make sure."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Runner:
    """Runs a part's commands into its log, each in a new process group, until the part's deadline."""

    log: Path
    deadline: float
    env: dict[str, str]
    commands: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __call__(self, command: list[str], check: bool = True, timeout: float | None = None,
                 shown: str | None = None) -> tuple[int, str]:
        """Run ``command``; returns (exit status, its output). ``check``: a non-zero status raises
        :class:`PartFailed`. Past the deadline (or ``timeout``) the command is killed and
        :class:`PartTimedOut` raised. ``shown``: how the report writes the command."""
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        if limit <= 0:
            raise PartTimedOut("no time left for " + " ".join(command[:6]))
        shown = shown or " ".join(arg if len(arg) < 100 and "\n" not in arg else "'...'" for arg in command)
        self.commands.append(shown)
        with open(self.log, "a") as log:
            log.write(f"$ {shown}\n")
            log.flush()
            start = log.tell()
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                log.write(f"\n[gpu-check] killed after {limit:.0f} s\n")
                raise PartTimedOut(f"still running after {limit:.0f} s: {shown[:200]}") from None
            finally:
                try:  # whatever the command left behind (loader workers, torchrun ranks) goes with it
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        with open(self.log, errors="replace") as log:
            log.seek(start)
            output = log.read()
        if check and returncode != 0:
            raise PartFailed(failure_reason(output, returncode))
        return returncode, output


@dataclass
class Part:
    name: str
    what: str
    timeout: float
    body: Callable[[Runner], dict[str, Any]]  # returns the part's details; raises PartFailed


@dataclass
class Context:
    """What the parts share: where things go, the mode, and the environment of every command."""

    out: Path  # the results folder, inside the work folder (archived into ``dest``)
    work: Path
    device: str
    quick: bool
    wheels: Path
    site: Path
    env: dict[str, str]
    dest: Path | None = None  # where gpu-check.md, gpu-check.json and the archive go ($OUT)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("OUT", None)  # commands write where they are told, not into $OUT
    return env


def ccnet(*args: str) -> list[str]:
    return [PYTHON, "-m", "ccnet.cli", *args]


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise PartFailed(f"{path.name} was not written (in {path.parent})")
    return json.loads(path.read_text())


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# -- the parts ------------------------------------------------------------------------------------
def missing_modules(run: Runner, names: tuple[str, ...]) -> list[str]:
    code = ("import importlib.util, sys; "
            "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))")
    _, output = run([PYTHON, "-c", code, *names], timeout=60)
    return output.split()


def install_wheels(run: Runner, wheels: Path, site: Path) -> str:
    """``pip install --no-index --no-deps --target site`` of every wheel; unpacks them when this
    interpreter has no pip (a wheel is a zip laid out as its installed files)."""
    files = sorted(wheels.glob("*.whl"))
    if site.exists():
        shutil.rmtree(site)
    code, _ = run([PYTHON, "-m", "pip", "--version"], check=False, timeout=30)
    if code == 0:
        command = [PYTHON, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                   "--disable-pip-version-check", "--target", str(site)]
        run([*command, *map(str, files)], shown=" ".join([*command, f"{wheels}/*.whl"]))
        return "pip install --no-index --no-deps --target"
    site.mkdir(parents=True)
    for path in files:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(site)
    return "unpacked (this interpreter has no pip)"


def part_setup(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    def body(run: Runner) -> dict[str, Any]:
        missing = missing_modules(run, REQUIRED_MODULES)
        if not missing:
            return {"installed": False, "note": "every dependency importable: nothing installed"}
        if not any(ctx.wheels.glob("*.whl")):
            raise PartFailed(f"cannot import {', '.join(missing)} and {ctx.wheels} holds no wheels "
                             "(run `make device-wheels` where PyPI is reachable and bring the folder along)")
        how = install_wheels(run, ctx.wheels, ctx.site)
        ctx.env["PYTHONPATH"] = os.pathsep.join([str(ctx.site), ctx.env["PYTHONPATH"]])  # for every later command
        still = missing_modules(run, REQUIRED_MODULES)
        if still:
            raise PartFailed(f"still cannot import {', '.join(still)} after installing {ctx.wheels}")
        # Every requirement of every wheel, against this interpreter's own distributions and versions.
        unmet = device_wheels.problems(ctx.wheels, device_wheels.installed_distributions(), {"extra": ""},
                                       importable=device_wheels.importable)
        details = {"installed": True, "how": how, "site": str(ctx.site), "had_to_install": missing,
                   "wheels": len(list(ctx.wheels.glob("*.whl"))), "unmet_requirements": unmet}
        if unmet:
            raise PartFailed(f"installed, but {len(unmet)} requirement(s) unmet: {'; '.join(unmet[:3])}")
        return details

    return body


PROBE = r"""
import json, platform, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cudnn": torch.backends.cudnn.version()}
try:
    import triton
    info["triton"] = triton.__version__
except Exception as error:
    info["triton"] = f"not importable ({type(error).__name__})"
import ccnet, numpy
info["ccnet"], info["numpy"] = ccnet.__version__, numpy.__version__
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}",
                gpu_memory_gib=round(props.total_memory / 2**30, 1))
    try:
        nccl = torch.cuda.nccl.version()
        info["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    except Exception as error:
        info["nccl"] = f"unknown ({type(error).__name__})"
print("PROBE " + json.dumps(info))
"""
SMI_FIELDS = "name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu,power.limit"


def part_environment(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    def body(run: Runner) -> dict[str, Any]:
        details: dict[str, Any] = {"device": ctx.device, "quick": ctx.quick}
        if shutil.which("nvidia-smi"):
            code, output = run(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader"], check=False,
                               timeout=20)
            text = "; ".join(line.strip() for line in output.strip().splitlines())
            details["nvidia_smi"] = text if code == 0 else f"nvidia-smi failed: {text[-200:]}"
            run(["nvidia-smi"], check=False, timeout=20)  # the full table, into the log
        else:
            details["nvidia_smi"] = "nvidia-smi: not found"
        _, output = run([PYTHON, "-c", PROBE], timeout=60)
        probe = [line for line in output.splitlines() if line.startswith("PROBE ")]
        details["versions"] = json.loads(probe[-1][len("PROBE "):])
        commit = "unknown (no git checkout)"
        if shutil.which("git") and (ROOT / ".git").exists():
            code, output = run(["git", "rev-parse", "--short", "HEAD"], check=False, timeout=10)
            commit = output.strip() if code == 0 else commit
        details["versions"]["commit"] = commit
        if ctx.cuda:
            if not details["versions"]["cuda_available"]:
                raise PartFailed(f"CUDA is not available to PyTorch {details['versions']['torch']} "
                                 f"(built for CUDA {details['versions']['cuda']}); {details['nvidia_smi']}")
            if details["nvidia_smi"].startswith("nvidia-smi"):
                raise PartFailed(details["nvidia_smi"])
        return details

    return body


def cuda_test_files() -> list[str]:
    """Every test file with a test marked ``cuda`` (tests/cuda and any other)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text(errors="replace"))


def junit_summary(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed, skipped = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                message = (node.get("message") or tag).strip().splitlines() or [tag]
                failed.append(f"{name}: {message[0][:200]}")
        node = case.find("skipped")
        if node is not None:
            reason = node.get("message") or ""
            skipped[reason] = skipped.get(reason, 0) + 1
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed, "skip_reasons": skipped}


def part_tests(ctx: Context, files: Callable[[], list[str]], name: str) -> Callable[[Runner], dict[str, Any]]:
    """``pytest -m cuda`` of ``files()``, summarised from its JUnit XML."""

    def body(run: Runner) -> dict[str, Any]:
        chosen = files()
        if not chosen:
            raise PartFailed("no test file has a test marked cuda")
        xml = ctx.out / "logs" / f"{name}.xml"
        # -v names each test as it starts: after a timeout the log's last line is the test that hung.
        code, output = run([PYTHON, "-m", "pytest", "-m", "cuda", "-v", "--durations=10", "-p", "no:cacheprovider",
                            f"--junitxml={xml}", *chosen], check=False)
        if not xml.is_file():
            raise PartFailed(failure_reason(output, code))
        summary = {"files": chosen, **junit_summary(xml)}
        if code != 0 or summary["failures"] or summary["errors"]:
            first = summary["failed"][0] if summary["failed"] else failure_reason(output, code)
            raise PartFailed(f"{summary['failures'] + summary['errors']} of {summary['tests']} failed; first: {first}")
        if ctx.cuda and summary["passed"] == 0:
            raise PartFailed(f"no CUDA test ran ({summary['skipped']} skipped: {list(summary['skip_reasons'])[:1]})")
        return summary

    return body


def part_cuda_tests(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    return part_tests(ctx, lambda: [f for f in cuda_test_files() if f != TRITON_TESTS], "cuda-tests")


def part_triton_tests(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    return part_tests(ctx, lambda: [TRITON_TESTS], "triton-tests")


# The Triton tests' configurations (tests/ops/test_criss_cross_triton.py), under PyTorch's default precision.
COMPILE_CONFIGS = r"^(cuda-test|cityscapes-769 1x).* (float32-highest|float16|bfloat16) "


def part_compile_check(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    out = ctx.out / "compile"
    if ctx.quick:
        selection = ["--only", r"cuda-test 2x5x7x1x30 float16 nchw", "--jobs", "2"]
    else:
        selection = ["--only", COMPILE_CONFIGS, "--jobs", "16"]

    def body(run: Runner) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        code, _ = run([PYTHON, str(ROOT / "scripts" / "triton_compile_check.py"), "--arch", "90", *selection,
                            "--cache", str(ctx.work / "compile-cache"), "--report", str(out / "triton-compile.md"),
                            "--json", str(out / "triton-compile.json")], check=False)
        report = read_json(out / "triton-compile.json")
        details = {"triton": report["triton"], "launches": len(report["rows"]), "problems": report["problems"],
                   "largest_spill_bytes": max((r["results"]["90"].get("spill_stores", 0) for r in report["rows"]),
                                              default=0)}
        if code != 0:
            raise PartFailed(f"{len(report['problems'])} problems, first: {(report['problems'] or ['?'])[0][:240]}")
        return details

    return body


def triton_roofline_ms(row: dict[str, Any]) -> dict[str, float] | None:
    """The fused kernels' roofline time on the H200 (scripts/triton_roofline.py, float32 under
    "highest" matmul precision, the bench's) for one op configuration, or None where it has no
    model (no ccnet to import, another dtype)."""
    try:
        import triton_roofline
        return triton_roofline.roofline_ms(row["batch"], row["qk_channels"], row["channels"], row["height"],
                                           row["width"], row.get("dtype", "float32"))
    except (ImportError, KeyError, ValueError):
        return None


def op_goals(row: dict[str, Any]) -> dict[str, Any] | None:
    """The Triton goals (docs/goals.md) for one op configuration, when the run had a Triton candidate: forward+
    backward at least 3x mmcv's and 2x the autograd function's speed, peak memory at most half
    the better baseline's."""
    ops = row["ops"]
    if "triton" not in ops:
        return None
    fused = ops["triton"]
    function = ops.get("function", ops.get("ccnet"))
    goals: dict[str, Any] = {"speedup_vs_mmcv": ops["mmcv"]["forward_backward_ms"] / fused["forward_backward_ms"]}
    goals["speedup_vs_mmcv_met"] = goals["speedup_vs_mmcv"] >= 3
    if function is not None:
        goals["speedup_vs_function"] = function["forward_backward_ms"] / fused["forward_backward_ms"]
        goals["speedup_vs_function_met"] = goals["speedup_vs_function"] >= 2
    roofline = triton_roofline_ms(row)
    if roofline is not None:
        goals["roofline_forward_backward_ms"] = roofline["forward_backward_ms"]
        goals["roofline_fraction"] = roofline["forward_backward_ms"] / fused["forward_backward_ms"]
    if "forward_backward_peak_mb" in fused:
        better = min(ops[n]["forward_backward_peak_mb"] for n in ("official", "mmcv") if n in ops)
        goals["memory_vs_better_baseline"] = fused["forward_backward_peak_mb"] / better
        goals["memory_met"] = goals["memory_vs_better_baseline"] <= 0.5
    return goals


def paper_claims(block_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RCCA (R=2) against one non-local block, per layout: FLOPs saved (paper: 85%) and memory
    ratio (paper: 11x less)."""
    claims = []
    for layout in dict.fromkeys(r["layout"] for r in block_rows):
        by_name = {r["block"]: r for r in block_rows if r["layout"] == layout}
        rcca, nl = by_name["rcca_r2"], by_name["non_local_x1"]
        claims.append({
            "layout": layout, "dtype": rcca.get("dtype", "float32"),
            "flops_saved": 1 - rcca["gflops"] / nl["gflops"],
            "forward_memory_ratio": nl["forward_peak_mb"] / max(rcca["forward_peak_mb"], 1e-9),
            "forward_backward_memory_ratio": nl["forward_backward_peak_mb"] / max(rcca["forward_backward_peak_mb"],
                                                                                  1e-9),
        })
    return claims


def part_bench(ctx: Context, dtype: str) -> Callable[[Runner], dict[str, Any]]:
    out = ctx.out / "bench" / dtype
    if ctx.quick:
        sizes = ["--sizes", "9x7", "--batches", "1", "--channels", "8", "--qk-channels", "4", "--repeats", "1",
                 "--block-size", "9", "7", "--block-channels", "16", "--layouts", "channels_last"]
    else:  # the sizes of docs/goals.md; the block at the paper's 97x97, 512 channels
        sizes = ["--sizes", "cityscapes-769", "--batches", "1", "8", "--channels", "512", "--qk-channels", "64",
                 "--repeats", "10", "--block-size", "97", "97", "--block-channels", "512",
                 "--layouts", "nchw", "channels_last"]

    def body(run: Runner) -> dict[str, Any]:
        run(ccnet("bench", "op", "block", "--device", ctx.device, "--dtype", dtype, *sizes, "--output", str(out)))
        results = read_json(out / "bench.json")
        ops, blocks = results.get("op", []), results.get("block", [])
        if not ops or not blocks:
            raise PartFailed("bench.json has no op or no block rows")
        limit = 1e-3 if dtype == "float32" else 5e-2
        for row in ops:
            for name, entry in row["ops"].items():
                if not (finite(entry["forward_ms"]) and finite(entry["forward_backward_ms"])):
                    raise PartFailed(f"{name} at {row['size']} batch {row['batch']}: time is not a finite number")
            for key, op in (("relative_error", "criss_cross_attention"), ("triton_relative_error", "backend='triton'")):
                if key in row and not (finite(row[key]) and row[key] <= limit):
                    raise PartFailed(f"{op} at {row['size']} {row['layout']}: relative error {row[key]:.2e} against "
                                     f"the float64 dense reference (limit {limit})")
            goals = op_goals(row)
            if goals is not None:
                row["goals"] = goals
        return {"gpu": results.get("gpu"), "matmul_gflops": results["ceiling"]["matmul_2048_gflops"],
                "op": [{k: v for k, v in r.items() if k != "ops"} | {"ops": _op_brief(r["ops"])} for r in ops],
                "claims": paper_claims(blocks), "markdown": (out / "bench.md").read_text()}

    return body


def _op_brief(ops: dict[str, Any]) -> dict[str, Any]:
    keep = ("forward_ms", "forward_backward_ms", "forward_peak_mb", "forward_backward_peak_mb")
    return {name: {k: e[k] for k in keep if k in e} for name, e in ops.items()}


def part_bench_model(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    out = ctx.out / "bench" / "model"
    amp = ["off", "fp16" if ctx.cuda else "bf16"]
    layouts = ["nchw"] if ctx.quick else ["nchw", "channels_last"]
    if ctx.quick:
        args = ["--model-backbone", "resnet18", "--model-batch", "1", "--model-size", "33", "33",
                "--model-train-size", "32", "32", "--repeats", "1"]
    else:
        args = ["--model-backbone", "resnet101", "--model-batch", "8", "--model-size", "769", "769",
                "--model-train-size", "769", "769", "--repeats", "4"]

    def body(run: Runner) -> dict[str, Any]:
        run(ccnet("bench", "model", "--device", ctx.device, *args, "--amp", *amp, "--layouts", *layouts,
                  "--output", str(out)))
        rows = read_json(out / "bench.json").get("model", [])
        if len(rows) != 2 * len(layouts) * len(amp):
            raise PartFailed(f"expected {2 * len(layouts) * len(amp)} rows (2 tasks x {len(layouts)} layouts x "
                             f"{len(amp)} AMP modes), bench.json has {len(rows)}")
        for row in rows:
            if not (finite(row["ms"]) and row["ms"] > 0):
                raise PartFailed(f"{row['task']} {row['variant']}: time {row['ms']} is not a positive number")
        return {"rows": [{k: v for k, v in r.items() if k != "samples_ms"} for r in rows],
                "markdown": (out / "bench.md").read_text()}

    return body


TINY_TRAIN = ["data.synthetic_size=[48, 48]", "data.synthetic_val_samples=3", "data.batch_size=2", "data.workers=0",
              "model.head_channels=16"]


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        raise PartFailed(f"{path.name} was not written")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def copy_artifacts(run_dir: Path, dest: Path, names: tuple[str, ...]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, dest / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, dest / name)


def part_train(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    run_dir = ctx.work / "train"
    if ctx.quick:
        args = [*TINY_TRAIN, "optim.iterations=12", "log_interval=2", "checkpoint_interval=12", "num_visualizations=1",
                "amp=fp16" if ctx.cuda else "amp=auto"]  # auto: none on a CPU
    else:
        args = ["optim.iterations=100", "log_interval=10", "checkpoint_interval=100", "data.workers=4",
                "num_visualizations=2", "amp=fp16"]

    def body(run: Runner) -> dict[str, Any]:
        run(ccnet("train", f"device={ctx.device}", *args, "--output", str(run_dir), "--no-progress"))
        copy_artifacts(run_dir, ctx.out / "train", ("log.jsonl", "metrics.json", "config.yaml", "predictions"))
        records = [r for r in train_records(run_dir) if "loss" in r]
        losses = [r["loss"] for r in records]
        if not losses or not all(finite(x) for x in losses):
            raise PartFailed(f"loss not finite: {losses}")
        third = max(1, len(losses) // 3)
        first, last = sum(losses[:third]) / third, sum(losses[-third:]) / third
        metrics = read_json(run_dir / "metrics.json")
        details = {"iterations": records[-1]["iteration"], "losses": losses, "first_third_loss": first,
                   "last_third_loss": last, "miou": metrics["miou"],
                   "seconds_per_iteration": sorted(r["time_per_iter"] for r in records)[len(records) // 2]}
        if not last < first:
            raise PartFailed(f"loss did not decrease: first third {first:.4f}, last third {last:.4f}")
        if not finite(metrics["miou"]):
            raise PartFailed(f"final mIoU is {metrics['miou']}")
        return details

    return body


def part_evaluate(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    run_dir = ctx.work / "train"

    def body(run: Runner) -> dict[str, Any]:
        checkpoint = run_dir / "checkpoints" / "latest.pt"
        if not checkpoint.is_file():
            raise PartFailed("no checkpoint to evaluate: the train part did not finish")
        result = ctx.out / "train" / "evaluate.json"
        run(ccnet("evaluate", "--checkpoint", str(checkpoint), f"device={ctx.device}", "--output", str(result)))
        metrics, trained = read_json(result), read_json(run_dir / "metrics.json")
        details = {"miou": metrics["miou"], "training_final_miou": trained["miou"]}
        if not finite(metrics["miou"]):
            raise PartFailed(f"mIoU is {metrics['miou']}")
        if abs(metrics["miou"] - trained["miou"]) > 0.01:  # the same model and data (the layout may differ)
            raise PartFailed(f"mIoU {metrics['miou']:.4f} differs from the training's final {trained['miou']:.4f}")
        return details

    return body


def part_torchrun(ctx: Context) -> Callable[[Runner], dict[str, Any]]:
    run_dir = ctx.work / "torchrun"
    iterations = 2 if ctx.quick else 10
    args = [*TINY_TRAIN] if ctx.quick else ["data.workers=2", "data.synthetic_val_samples=16"]
    backend = "nccl" if ctx.cuda else "gloo"

    def body(run: Runner) -> dict[str, Any]:
        _, output = run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                         "-m", "ccnet.cli", "train", f"device={ctx.device}", *args, f"optim.iterations={iterations}",
                         "log_interval=1", f"checkpoint_interval={iterations}", "num_visualizations=0",
                         "--output", str(run_dir), "--no-progress"])
        copy_artifacts(run_dir, ctx.out / "torchrun", ("log.jsonl", "metrics.json"))
        banner = [line for line in output.splitlines() if line.startswith("training ")]
        if not banner or f"{backend})" not in banner[-1]:
            seen = banner[-1] if banner else output[-200:]
            raise PartFailed(f"the run did not report a {backend} process group: {seen}")
        losses = {r["iteration"]: r["loss"] for r in train_records(run_dir) if "loss" in r}
        if sorted(losses) != list(range(1, iterations + 1)) or not all(finite(x) for x in losses.values()):
            raise PartFailed(f"expected finite losses at iterations 1..{iterations}, got {losses}")
        return {"backend": backend, "banner": banner[-1], "losses": list(losses.values())}

    return body


PART_NAMES = ("setup", "environment", "compile-check", "triton-tests", "cuda-tests", "bench-float32", "bench-bfloat16",
              "bench-model", "train", "evaluate", "torchrun")


def plan(ctx: Context) -> list[Part]:
    """The parts in order, with their time limits (generous for the CPU dry run on a busy machine)."""
    seconds = {"setup": 30, "environment": 20, "compile-check": 60, "triton-tests": 90, "cuda-tests": 80,
               "bench-float32": 55, "bench-bfloat16": 45, "bench-model": 55, "train": 45, "evaluate": 20,
               "torchrun": 30}
    assert sum(seconds.values()) <= GPU_COMMAND_SECONDS - 60
    if not ctx.cuda:
        seconds = dict.fromkeys(seconds, 180)
    parts = [
        Part("setup", "install the device wheels unless importable; requirement closure", seconds["setup"],
             part_setup(ctx)),
        Part("environment", "nvidia-smi, versions", seconds["environment"], part_environment(ctx)),
        Part("compile-check", "Triton kernels compiled for sm_90: registers, spills, shared memory; cache warmed",
             seconds["compile-check"], part_compile_check(ctx)),
        Part("triton-tests", f"pytest -m cuda {TRITON_TESTS}", seconds["triton-tests"], part_triton_tests(ctx)),
        Part("cuda-tests", "pytest -m cuda, the other files", seconds["cuda-tests"], part_cuda_tests(ctx)),
        Part("bench-float32", "ccnet bench op block, float32", seconds["bench-float32"], part_bench(ctx, "float32")),
        Part("bench-bfloat16", "ccnet bench op block, bfloat16", seconds["bench-bfloat16"],
             part_bench(ctx, "bfloat16")),
        Part("bench-model", "ccnet bench model: inference + training step, AMP x layout", seconds["bench-model"],
             part_bench_model(ctx)),
        Part("train", "default job, amp=fp16: loss finite and decreasing", seconds["train"], part_train(ctx)),
        Part("evaluate", "ccnet evaluate of the train part's checkpoint", seconds["evaluate"], part_evaluate(ctx)),
        Part("torchrun", "torchrun --nproc_per_node 1 training (nccl on CUDA)", seconds["torchrun"],
             part_torchrun(ctx)),
    ]
    assert tuple(p.name for p in parts) == PART_NAMES
    return parts


def injected(part: Part, kind: str) -> Part:
    """``part`` replaced by a command failing as ``kind`` says (:data:`INJECTED`)."""

    def body(run: Runner) -> dict[str, Any]:
        run([PYTHON, "-c", INJECTED[kind]])
        return {}

    timeout = INJECTED_TIMEOUT_S if kind == "timeout" else part.timeout
    return Part(part.name, f"{part.what} [injected failure: {kind}]", timeout, body)


# -- running the parts and reporting ----------------------------------------------------------------
def run_parts(parts: list[Part], ctx: Context, budget: float, summary: dict[str, Any]) -> list[dict[str, Any]]:
    (ctx.out / "logs").mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget
    results: list[dict[str, Any]] = summary["parts"]
    for index, part in enumerate(parts, 1):
        log = ctx.out / "logs" / f"{part.name}.log"
        log.write_text("")
        left = deadline - time.monotonic()
        result: dict[str, Any] = {"name": part.name, "what": part.what, "log": str(log.relative_to(ctx.out))}
        if left < MIN_PART_SECONDS:
            result.update(status="skipped", seconds=0.0, reason=f"out of time: {max(left, 0):.0f} s of the "
                                                                f"{budget:.0f} s budget left")
        else:
            limit = min(part.timeout, left)
            result["timeout_s"] = round(limit, 1)
            runner = Runner(log, time.monotonic() + limit, ctx.env)
            start = time.monotonic()
            try:
                result["details"] = part.body(runner)
                result["status"] = "pass"
            except PartTimedOut as error:
                cut = " (cut short by the budget)" if limit < part.timeout else ""
                result.update(status="timeout", reason=f"{error}{cut}")
            except PartFailed as error:
                result.update(status="fail", reason=str(error))
            except Exception as error:  # a bug in the check itself: reported like a failure, never fatal
                with open(log, "a") as handle:
                    handle.write(traceback.format_exc())
                result.update(status="fail", reason=f"gpu_check error: {type(error).__name__}: {error}")
            result["seconds"] = round(time.monotonic() - start, 1)
            result["commands"] = runner.commands
            if result["status"] != "pass":
                result["log_tail"] = log.read_text(errors="replace").splitlines()[-25:]
        results.append(result)
        note = f": {result['reason']}" if "reason" in result else ""
        print(f"[{index}/{len(parts)}] {part.name}: {result['status']} ({result['seconds']:.1f} s){note}", flush=True)
        write_summary(summary, ctx)
    return results


def write_summary(summary: dict[str, Any], ctx: Context) -> None:
    summary["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    summary["seconds"] = round(time.monotonic() - summary["_start"], 1)
    summary["passed"] = sum(p["status"] == "pass" for p in summary["parts"])
    summary["failed"] = [p["name"] for p in summary["parts"] if p["status"] != "pass"]
    folders = [ctx.out] + ([ctx.dest] if ctx.dest is not None else [])
    if ctx.dest is not None:
        summary["archive"] = write_archive(ctx.out, ctx.dest / ARCHIVE)
    data = {k: v for k, v in summary.items() if not k.startswith("_")}
    for folder in folders:
        for name, text in (("gpu-check.json", json.dumps(data, indent=2, default=str) + "\n"),
                           ("gpu-check.md", markdown(data))):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(folder / name)


def write_archive(results: Path, path: Path) -> dict[str, Any]:
    """``results`` as a gzipped tar (written aside, then renamed); files over
    :data:`ARCHIVE_FILE_LIMIT` are left out and named."""
    files = sorted(p for p in results.rglob("*") if p.is_file() and not p.name.startswith("."))
    left_out = [str(p.relative_to(results)) for p in files if p.stat().st_size > ARCHIVE_FILE_LIMIT]
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, "w:gz") as archive:
        for p in files:
            if str(p.relative_to(results)) not in left_out:
                archive.add(p, arcname=str(Path("results") / p.relative_to(results)))
    tmp.replace(path)
    return {"file": path.name, "files": len(files) - len(left_out), "bytes": path.stat().st_size,
            "left_out": left_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the project's GPU check (see the module docstring).")
    parser.add_argument("--output", type=Path, default=Path(os.environ.get("OUT") or ROOT / "gpu-check-out"),
                        help="results folder (default: $OUT, else gpu-check-out/)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere: a dry run of every part")
    parser.add_argument("--budget", type=float, help="seconds for all parts together (default: the sum of the "
                                                     "parts' limits); a part that would not get 5 s is skipped")
    parser.add_argument("--only", help="comma-separated part names to run (default: all, in order)")
    parser.add_argument("--inject", action="append", default=[], metavar="PART=KIND",
                        help=f"make PART fail on purpose: {', '.join(INJECTED)} (proves the failure handling)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".device-wheels",
                        help="wheel folder (make device-wheels)")
    parser.add_argument("--site", type=Path, help="where the wheels are installed (default: inside --work)")
    parser.add_argument("--work", type=Path, help="folder for checkpoints and runs (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else list(PART_NAMES)
    unknown = [n for n in wanted if n not in PART_NAMES]
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; parts: {', '.join(PART_NAMES)}")
    injections = dict(item.partition("=")[::2] for item in args.inject)
    for name, kind in injections.items():
        if name not in PART_NAMES or kind not in INJECTED:
            parser.error(f"--inject {name}={kind}: parts are {', '.join(PART_NAMES)}; kinds {', '.join(INJECTED)}")

    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="ccnet-gpu-check-"))
    site = args.site.resolve() if args.site else work / "site"
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    ctx = Context(out=results, work=work, device=args.device, quick=args.quick, wheels=args.wheels.resolve(),
                  site=site, env=base_env(), dest=out)
    if not ctx.cuda:  # a CPU dry run shares its cores: one thread each, no OpenMP spin-waits against the load
        ctx.env.setdefault("OMP_NUM_THREADS", "1")
    parts = [injected(p, injections[p.name]) if p.name in injections else p for p in plan(ctx) if p.name in wanted]
    budget = args.budget if args.budget is not None else sum(p.timeout for p in parts)
    summary: dict[str, Any] = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device,
                               "quick": args.quick, "budget_s": budget, "output": str(out), "parts": [],
                               "_start": time.monotonic()}
    print(f"gpu-check: {len(parts)} parts on {args.device}{' (quick)' if args.quick else ''}, budget {budget:.0f} s, "
          f"work folder {work}, results in {out}", flush=True)
    try:
        run_parts(parts, ctx, budget, summary)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu-check: {summary['passed']} of {len(parts)} parts passed in {summary['seconds']:.0f} s; "
          f"{out / 'gpu-check.md'}", flush=True)
    return 0 if summary["passed"] == len(parts) else 1


if __name__ == "__main__":
    sys.exit(main())
