"""Every Triton kernel launch of the model and the benchmarks, compiled ahead of time to cubin for
sm_90 and sm_80 on a machine without a GPU, and checked for what would go wrong on one.

How: the launcher's own ``triton_forward`` / ``triton_backward`` (``ccnet.ops.criss_cross_triton``)
run on ``meta`` tensors with ``_launch`` replaced by a recorder; each launch is specialised with
Triton's own binder (``create_function_from_signature`` and ``JITFunction._pack_args``: ints equal
to 1 become constants, 16-divisible ints and aligned pointers get divisibility hints, exactly as at
run time) and compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``
through TTIR, TTGIR, LLVM IR and PTX to a cubin by the ``ptxas`` the triton wheel ships; ptxas's
``-v`` report (``triton.knobs.nvidia.dump_ptxas_log``) gives registers and spill bytes. A
launch whose shared memory exceeds the target's opt-in limit is compiled again with
``num_stages=1``, the launcher's own fallback (reported as such).

Fails (exit status 1, one line per finding) on: a compile error; shared memory beyond the target's
opt-in limit after the fallback; any register spill (of any size, in any kernel); a grid beyond CUDA's limits; and int32
arithmetic that can wrap, found by an interval analysis of each kernel's TTIR at the largest batch
the launcher accepts for the shape (every grid at most ``MAX_PROGRAMS``): scalar arguments and
program ids have known ranges there, and every 32-bit ``addi`` / ``subi`` / ``muli`` whose result
range leaves int32 is reported with its source line.

Workloads (:data:`WORKLOADS`): the RCCA head at Cityscapes 769 crops (97x97 features, batch 1 and
8: ``ccnet bench op``) and 1024x2048 images (128x256), Cityscapes 512x1024 crops (64x128), ADE20K
512 (64x64), CCNet3D on CamVid clips (5 x 45 x 60, batch 2) and the shapes of the CUDA tests; each
in float32 under "highest" and "high" matmul precision, float16 and bfloat16, NCHW and
channels-last, forward and backward. ``--quick`` takes a representative few (the 97x97 head
in float32 "highest" NCHW, the worst case for registers, and bfloat16 channels-last, the
training path) for ``make test``; the full set takes several minutes per target on two cores.

Results are cached per launch (``--cache``, default ``~/.cache/ccnet/triton-compile-check``) by
a key of the Triton version, the kernel's source (``JITFunction.cache_key``, which covers the
functions it calls), its specialisation, options and target; Triton's own cache is written as
well (``TRITON_ALWAYS_COMPILE``), so a run on the GPU machine warms it for the CUDA tests.
``--report`` writes the table as markdown, ``--json`` every result.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Opt-in shared memory per block (bytes): H100/H200 (sm_90) 227 KB, A100 (sm_80) 163 KB.
SHARED_LIMIT = {90: 232448, 80: 166912}
GRID_LIMITS = (2**31 - 1, 65535, 65535)
INT32 = (-(2**31), 2**31 - 1)
DTYPES = ("float32-highest", "float32-high", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    batch: int
    qk: int
    channels: int
    spatial: tuple[int, ...]
    backward: bool = True


WORKLOADS = (
    Workload("cityscapes-769", 1, 64, 512, (97, 97)),
    Workload("cityscapes-769", 8, 64, 512, (97, 97)),
    Workload("cityscapes-1024x2048", 1, 64, 512, (128, 256)),
    Workload("cityscapes-512x1024", 8, 64, 512, (64, 128)),
    Workload("ade20k-512", 16, 64, 512, (64, 64)),
    Workload("camvid-clip", 2, 64, 512, (5, 45, 60)),
    Workload("cuda-test", 2, 16, 48, (33, 47)),
    Workload("cuda-test", 1, 64, 40, (256, 3)),
    Workload("cuda-test", 2, 5, 7, (1, 30)),
    Workload("cuda-test", 2, 8, 24, (5, 9, 11)),
    Workload("cuda-test", 1, 80, 24, (300, 2)),
)
# --quick: (workload index, dtype, layout)
QUICK = ((0, "float32-highest", "nchw"), (1, "bfloat16", "channels_last"))


@dataclasses.dataclass
class Launch:
    """One recorded kernel launch, specialised as Triton's runtime would."""

    config: str  # workload, dtype, layout, direction
    kernel: str
    grid: tuple[int, ...]
    values: dict[str, Any]  # every argument by name (tensors as their dtype)
    signature: dict[str, str]
    constexprs: dict[Any, Any]
    attrs: dict[Any, Any]
    options: dict[str, Any]
    key: str = ""


# -- recording ----------------------------------------------------------------------------------
@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(name)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def record(work: Workload, dtype: str, layout: str, batch: int | None = None) -> list[tuple[str, Any, tuple, dict]]:
    """``(direction, kernel, grid, args, kwargs)`` of every launch of ``work`` (forward, then backward)."""
    import torch

    from ccnet.ops import criss_cross_triton as launcher

    torch_dtype = getattr(torch, dtype.split("-")[0])
    batch = work.batch if batch is None else batch
    fmt = {"nchw": torch.contiguous_format, "channels_last":
           torch.channels_last if len(work.spatial) == 2 else torch.channels_last_3d}[layout]

    def tensor(channels: int) -> Any:
        return torch.empty(batch, channels, *work.spatial, device="meta", dtype=torch_dtype).contiguous(
            memory_format=fmt)

    q, k, v = tensor(work.qk), tensor(work.qk), tensor(work.channels)
    launches: list = []
    direction = ["forward"]
    original = launcher._launch
    launcher._launch = lambda kernel, grid, *args, **kwargs: launches.append((direction[0], kernel, grid, args, kwargs))
    try:
        with matmul_precision(dtype.split("-")[1] if "-" in dtype else "highest"):
            out, lse = launcher.triton_forward(q, k, v, False)
            if work.backward:
                direction[0] = "backward"
                launcher.triton_backward(torch.empty_like(out), q, k, v, out, lse, False)
    finally:
        launcher._launch = original
    return launches


def _portable(options: dict[str, Any]) -> dict[str, Any]:
    """Compile options with file paths cut to their names (libdevice lives in the environment's
    site-packages), so a key is the same in every checkout and environment."""
    def cut(value: Any) -> Any:
        if isinstance(value, str) and os.sep in value:
            return os.path.basename(value)
        if isinstance(value, (list, tuple)):
            return type(value)(cut(v) for v in value)
        return value
    return {name: cut(value) for name, value in options.items()}


def specialise(config: str, kernel: Any, grid: tuple, args: tuple, kwargs: dict, arch: int) -> Launch:
    """The launch as ``kernel[grid](*args, **kwargs)`` would compile it for ``arch``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", arch, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    values = {name: (str(value.dtype) if hasattr(value, "data_ptr") else value) for name, value in bound.items()}
    launch = Launch(config, kernel.fn.__name__, tuple(grid), values, signature, constexprs, attrs, options.__dict__)
    text = json.dumps([triton.__version__, kernel.cache_key, signature, repr(sorted(constexprs.items())),
                       repr(sorted(attrs.items())), repr(sorted(_portable(options.__dict__).items())), arch],
                      default=repr)
    launch.key = hashlib.sha256(text.encode()).hexdigest()[:24]
    return launch


def configurations(quick: bool) -> Iterator[tuple[Workload, str, str]]:
    if quick:
        for index, dtype, layout in QUICK:
            yield WORKLOADS[index], dtype, layout
        return
    for work in WORKLOADS:
        for dtype in DTYPES:
            for layout in ("nchw", "channels_last"):
                yield work, dtype, layout


def config_name(work: Workload, dtype: str, layout: str) -> str:
    shape = "x".join(map(str, (work.batch, work.qk, work.channels, *work.spatial)))
    return f"{work.name} {shape} {dtype} {layout}"


# -- compiling (in worker processes) ------------------------------------------------------------
PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")


def _kernel(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module("ccnet.ops.criss_cross_triton_kernels"), name)


def compile_launch(launch: Launch, arch: int) -> dict[str, Any]:
    """Compile for ``arch`` (again with one stage when shared memory overflows); the resources."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    knobs.nvidia.dump_ptxas_log = True
    knobs.compilation.always_compile = True  # a ptxas report every time; Triton's cache still written
    result: dict[str, Any] = {"arch": arch, "fallback": None}
    options = dict(launch.options)
    started = time.monotonic()
    for attempt in ("default", "num_stages=1"):
        if attempt != "default":
            options["num_stages"] = 1
            result["fallback"] = attempt
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                compiled = triton.compile(ASTSource(_kernel(launch.kernel), launch.signature, launch.constexprs,
                                                    launch.attrs), target=GPUTarget("cuda", arch, 32), options=options)
        except Exception as error:  # every compile error is a finding
            result["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            break
        text = log.getvalue()
        spills = [tuple(map(int, m)) for m in PTXAS_SPILLS.findall(text)]
        registers = [int(m) for m in PTXAS_REGISTERS.findall(text)]
        result.update(registers=max(registers, default=None), stack=max((s[0] for s in spills), default=0),
                      spill_stores=max((s[1] for s in spills), default=0),
                      spill_loads=max((s[2] for s in spills), default=0), shared=compiled.metadata.shared,
                      num_warps=options["num_warps"], num_stages=options["num_stages"])
        if registers == [] or spills == []:
            result["error"] = "no ptxas -v report in the compiler's output"
        if compiled.metadata.shared <= SHARED_LIMIT[arch]:
            break
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# -- int32 wrap-around: interval analysis of TTIR -------------------------------------------------
TTIR_OP = re.compile(r"^\s*(%[\w$.-]+)(?::\d+)? = ([\w.]+)\b(.*?)(?: loc\((#loc\d*)\))?$")
TTIR_FOR = re.compile(r"^\s*(?:%[\w$.-]+(?::\d+)? = )?scf\.for (%[\w$.-]+) = (%[\w$.-]+) to (%[\w$.-]+) step")
TTIR_LOC = re.compile(r'^(#loc\d*) = loc\((.*)\)$', re.MULTILINE)
INTEGER_TYPE = re.compile(r"(?:^|[x<\s])i(\d+)>?\s*$")


def ttir(launch: Launch) -> str:
    """The launch's TTIR (front end and TTIR passes only: cheap)."""
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    options = backend.parse_options(launch.options)
    source = ASTSource(_kernel(launch.kernel), launch.signature, launch.constexprs, launch.attrs)
    stages: dict[str, Any] = {}
    backend.add_stages(stages, options, source.language)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = source.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(),
                            context)
    return str(stages["ttir"](module, {}))


def _source_line(locations: dict[str, str], ref: str | None, depth: int = 0) -> str:
    text = locations.get(ref or "", "")
    found = re.search(r'"([^"]+\.py)":(\d+)', text)
    if found:
        return f"{Path(found.group(1)).name}:{found.group(2)}"
    inner = re.search(r"(#loc\d*)", text)
    return _source_line(locations, inner.group(1), depth + 1) if inner and depth < 8 else "?"


def _divide(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    if b[0] <= 0 <= b[1]:
        return None
    corners = [int(x / y) for x in a for y in b]  # C division truncates towards zero
    return min(corners), max(corners)


def int32_hazards(text: str, values: dict[str, Any], programs: int) -> list[str]:
    """32-bit integer ``addi`` / ``subi`` / ``muli`` of a TTIR function whose result can leave
    int32, given the scalar arguments ``values`` and ``programs`` along axis 0; one line each."""
    locations = dict(TTIR_LOC.findall("\n".join(line for line in text.splitlines() if line.startswith("#loc"))))
    known: dict[str, tuple[int, int]] = {f"%{name}": (value, value) for name, value in values.items()
                                         if isinstance(value, int) and not isinstance(value, bool)}
    hazards = []
    for line in text.splitlines():
        loop = TTIR_FOR.match(line)
        if loop:
            start, stop = known.get(loop.group(2)), known.get(loop.group(3))
            if start and stop:
                known[loop.group(1)] = (start[0], max(start[0], stop[1] - 1))
        match = TTIR_OP.match(line)
        if not match:
            continue
        result, op, rest, loc = match.groups()
        operands = [known.get(name) for name in re.findall(r"%[\w$.-]+", rest.split(" : ")[0])]
        value: tuple[int, int] | None = None
        if op == "arith.constant":
            number = re.match(r"\s*(?:dense<)?(-?\d+)>? : (?:tensor<[\dx]*)?i\d+", rest)
            value = (int(number.group(1)),) * 2 if number else None
        elif op == "tt.get_program_id":
            value = (0, programs - 1) if rest.strip().startswith("x") else (0, 0)
        elif op == "tt.make_range":
            bounds = re.search(r"end = (\d+) : i32, start = (\d+)", rest)
            value = (int(bounds.group(2)), int(bounds.group(1)) - 1) if bounds else None
        elif op in ("tt.splat", "tt.expand_dims", "tt.broadcast", "arith.extsi", "tt.reshape", "tt.trans"):
            value = operands[0] if operands else None
        elif op == "arith.select" and len(operands) == 3 and operands[1] and operands[2]:
            value = (min(operands[1][0], operands[2][0]), max(operands[1][1], operands[2][1]))
        elif len(operands) == 2 and None not in operands:
            a, b = operands
            if op == "arith.addi":
                value = (a[0] + b[0], a[1] + b[1])
            elif op == "arith.subi":
                value = (a[0] - b[1], a[1] - b[0])
            elif op == "arith.muli":
                corners = [x * y for x in a for y in b]
                value = (min(corners), max(corners))
            elif op == "arith.divsi":
                value = _divide(a, b)
            elif op == "arith.remsi" and b[0] > 0:
                value = (0 if a[0] >= 0 else -(b[1] - 1), min(b[1] - 1, max(a[1], 0)))
            elif op == "arith.minsi":
                value = (min(a[0], b[0]), min(a[1], b[1]))
            elif op == "arith.maxsi":
                value = (max(a[0], b[0]), max(a[1], b[1]))
        if value is None:
            continue
        width = INTEGER_TYPE.search(rest.split(" : ")[-1])
        if op in ("arith.addi", "arith.subi", "arith.muli") and width and width.group(1) == "32" and (
                value[0] < INT32[0] or value[1] > INT32[1]):
            hazards.append(f"{_source_line(locations, loc)}: {op} {result} in int32 can reach [{value[0]}, {value[1]}]")
        known[result] = value
    return hazards


def largest_batch(work: Workload, dtype: str, layout: str) -> int:
    """The largest batch whose every launch stays within ``MAX_PROGRAMS`` (grids grow with it)."""
    from ccnet.ops.criss_cross_triton import MAX_PROGRAMS

    grids = [grid[0] for _, _, grid, _, _ in record(work, dtype, layout, batch=1)]
    return max(1, MAX_PROGRAMS // max(grids))


def hazard_check(work: Workload, dtype: str, layout: str) -> list[str]:
    batch = largest_batch(work, dtype, layout)
    found = []
    for direction, kernel, grid, args, kwargs in record(work, dtype, layout, batch=batch):
        launch = specialise("", kernel, grid, args, kwargs, 90)
        for hazard in int32_hazards(ttir(launch), launch.values, grid[0]):
            found.append(f"{config_name(work, dtype, layout)} at batch {batch}, {direction} {launch.kernel}: {hazard}")
    return found


# -- the check ----------------------------------------------------------------------------------
def findings(launch: Launch, result: dict[str, Any]) -> list[str]:
    where = f"{launch.config} {launch.kernel} sm_{result['arch']}"
    problems = []
    if "error" in result:
        problems.append(f"{where}: compile error: {result['error']}")
        return problems
    if result["shared"] > SHARED_LIMIT[result["arch"]]:
        problems.append(f"{where}: {result['shared']} B shared memory > {SHARED_LIMIT[result['arch']]} B")
    if result["spill_stores"] or result["spill_loads"]:
        problems.append(f"{where}: register spills, {result['spill_stores']} B stores / {result['spill_loads']} B "
                        f"loads ({result['registers']} registers)")
    if any(size > limit for size, limit in zip(launch.grid, GRID_LIMITS, strict=False)):
        problems.append(f"{where}: grid {launch.grid} beyond CUDA's {GRID_LIMITS}")
    return problems


def load_cache(folder: Path, key: str) -> dict[str, Any] | None:
    path = folder / f"{key}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def markdown(rows: list[dict[str, Any]], archs: list[int], hazards: list[str], command: str,
             problems: list[str]) -> str:
    lines = [f"Made by `{command}` (Triton {rows[0]['triton'] if rows else '?'}); per launch: registers / "
             "spill bytes (stores + loads) / shared memory KB, warps x stages, ! after a fallback.", "",
             "| configuration | kernel | grid | " + " | ".join(f"sm_{a}" for a in archs) + " |",
             "|---|---|---|" + "---|" * len(archs)]
    for row in rows:
        cells = []
        for arch in archs:
            r = row["results"][str(arch)]
            if "error" in r:
                cells.append("error")
                continue
            cells.append(f"{r['registers']} / {r['spill_stores'] + r['spill_loads']} / {r['shared'] / 1024:.0f} "
                         f"/ {r['num_warps']}x{r['num_stages']}{' !' if r['fallback'] else ''}")
        lines.append(f"| {row['config']} | {row['kernel']} | {row['grid'][0]} | " + " | ".join(cells) + " |")
    lines += ["", f"int32 wrap-around at the largest batch the launcher accepts: {len(hazards)} found"]
    lines += [f"- {h}" for h in hazards]
    lines += ["", f"Problems (the check fails on these): {len(problems)}"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a representative few configurations (make test)")
    parser.add_argument("--only", help="only the configurations whose name matches this regular expression")
    parser.add_argument("--arch", default="90,80", help="compute capabilities, comma-separated (default 90,80)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ccnet" / "triton-compile-check")
    parser.add_argument("--no-cache", action="store_true", help="compile everything again")
    parser.add_argument("--report", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args(argv)
    archs = [int(a) for a in args.arch.split(",")]
    # Triton 3.9 warns that its default will change; the environment stays as the runtime's (cache keys).
    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
    import triton

    started = time.monotonic()
    launches: dict[str, tuple[Launch, int]] = {}  # key -> launch, arch (the first configuration that needs it)
    rows = []
    problems: list[str] = []
    configs = [c for c in configurations(args.quick) if not args.only or re.search(args.only, config_name(*c))]
    for work, dtype, layout in configs:
        name = config_name(work, dtype, layout)
        for direction, kernel, grid, call_args, kwargs in record(work, dtype, layout):
            row = {"config": f"{name} {direction}", "kernel": kernel.fn.__name__, "grid": list(grid), "keys": {},
                   "triton": triton.__version__}
            for arch in archs:
                launch = specialise(row["config"], kernel, grid, call_args, kwargs, arch)
                row["keys"][str(arch)] = launch.key
                launches.setdefault(launch.key, (launch, arch))
                row.setdefault("launch", launch)
            rows.append(row)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    args.cache.mkdir(parents=True, exist_ok=True)
    for key, (launch, arch) in launches.items():
        cached = None if args.no_cache else load_cache(args.cache, key)
        if cached is not None:
            results[key] = cached
        else:
            todo.append((key, launch, arch))
    print(f"{len(rows)} launches in {len(configs)} configurations, {len(launches)} distinct compiles for "
          f"{', '.join(f'sm_{a}' for a in archs)}: {len(todo)} to compile, {len(launches) - len(todo)} cached",
          flush=True)
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(compile_launch, launch, arch): key for key, launch, arch in todo}
        hazard_futures = [pool.submit(hazard_check, work, dtype, layout) for work, dtype, layout in configs]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            key = futures[future]
            results[key] = future.result()
            (args.cache / f"{key}.json").write_text(json.dumps(results[key]))
            if done % 10 == 0 or done == len(futures):
                print(f"  compiled {done}/{len(futures)} ({time.monotonic() - started:.0f} s)", flush=True)
        hazards = sorted({h for future in hazard_futures for h in future.result()})
    seen = set()
    for row in rows:
        launch = row.pop("launch")
        row["results"] = {}
        for arch in archs:
            result = results[row["keys"][str(arch)]]
            row["results"][str(arch)] = result
            for problem in findings(dataclasses.replace(launch, grid=tuple(row["grid"])), result):
                if problem not in seen:
                    seen.add(problem)
                    problems.append(problem)
    problems += [f"int32 wrap: {h}" for h in hazards]
    command = "python scripts/triton_compile_check.py" + (" --quick" if args.quick else "") + (
        f" --only '{args.only}'" if args.only else "")
    if args.report:
        args.report.write_text(markdown(rows, archs, hazards, command, problems))
    if args.json:
        args.json.write_text(json.dumps({"triton": triton.__version__, "archs": archs, "quick": args.quick,
                                         "only": args.only, "rows": rows,
                                         "hazards": hazards, "problems": problems}, indent=1, default=repr))
    worst = {arch: max((r["results"][str(arch)].get("spill_stores", 0) for r in rows), default=0) for arch in archs}
    print(f"{len(rows)} launches, {len(launches)} compiles, {time.monotonic() - started:.0f} s; largest spill stores "
          + ", ".join(f"sm_{a} {worst[a]} B" for a in archs)
          + f"; {len(hazards)} int32 hazards")
    for problem in problems:
        print(f"FAIL {problem}")
    print("ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
