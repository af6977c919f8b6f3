"""The Markdown of ``make gpu-check`` (``gpu-check.md``): rendering only.

``scripts/gpu_check.py``'s parts return data (a part's ``details``); each part's rendering is one
function here, chosen by the part's name (``RENDERERS``). Standard library only, like the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def markdown(summary: dict[str, Any]) -> str:
    parts = {p["name"]: p for p in summary["parts"]}
    env = parts.get("environment", {}).get("details", {})
    versions = env.get("versions", {})
    title = versions.get("gpu") or ("CPU dry run" if not summary["device"].startswith("cuda") else "no GPU found")
    lines = [f"# make gpu-check: {title}", "",
             f"{summary['started']}, {summary['seconds']:.0f} s of a {summary['budget_s']:.0f} s budget, device "
             f"`{summary['device']}`{' (quick: tiny sizes)' if summary['quick'] else ''}; "
             f"{summary['passed']} of {len(summary['parts'])} parts passed."
             + (f" Logs and results: `{summary['archive']['file']}` ({summary['archive']['files']} files)."
                if "archive" in summary else ""), ""]
    if env:
        lines += [f"- nvidia-smi: `{env.get('nvidia_smi', '-')}`",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "gpu"), ""]
    lines += ["| part | what | status | seconds | note |", "|---|---|---|---|---|"]
    for p in summary["parts"]:
        note = (p.get("reason") or "").replace("|", "\\|")
        lines.append(f"| {p['name']} | {p['what']} | **{p['status']}** | {p['seconds']:.0f} | {note} |")
    for p in summary["parts"]:
        lines += part_markdown(p)
    return "\n".join(lines) + "\n"


def _compile_check(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(f"Triton {details['triton']}: {details['launches']} launches compiled for sm_90, largest spill "
                 f"{details['largest_spill_bytes']} B; {len(details['problems'])} problems "
                 "(table: results/compile/triton-compile.md in the archive)")
    lines += [f"- {p}" for p in details["problems"][:10]]
    return lines


def _tests(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(f"{details['passed']} passed, {details['failures'] + details['errors']} failed, "
                 f"{details['skipped']} skipped ({', '.join(details['files'])})")
    lines += [f"- skipped {n}: {reason}" for reason, n in details["skip_reasons"].items()]
    return lines


def _bench(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines += [f"matmul 2048x2048: {details['matmul_gflops']:.0f} GFLOP/s", "", details["markdown"].strip(), ""]
    for claim in details["claims"]:
        lines.append(f"- {claim['layout']} ({claim['dtype']}): RCCA (R=2) against one non-local block: "
                     f"{claim['flops_saved']:.1%} fewer FLOPs (paper: 85%), "
                     f"{claim['forward_memory_ratio']:.1f}x less forward peak memory, "
                     f"{claim['forward_backward_memory_ratio']:.1f}x less forward+backward (paper: 11x)")
    goals = [r for r in details["op"] if "goals" in r]
    if not goals:
        lines.append("- Triton goals (docs/goals.md): no `triton` candidate in this run's `ccnet bench op`: "
                     "not measured")
    for row in goals:
        g = row["goals"]
        text = [f"{g['speedup_vs_mmcv']:.2f}x mmcv (goal 3x: {'met' if g['speedup_vs_mmcv_met'] else 'not met'})"]
        if "speedup_vs_function" in g:
            text.append(f"{g['speedup_vs_function']:.2f}x the autograd function (goal 2x: "
                        f"{'met' if g['speedup_vs_function_met'] else 'not met'})")
        if "memory_vs_better_baseline" in g:
            text.append(f"peak memory {g['memory_vs_better_baseline']:.2f}x the better baseline (goal 0.5x: "
                        f"{'met' if g['memory_met'] else 'not met'})")
        if "roofline_forward_backward_ms" in g:
            text.append(f"measured {row['ops']['triton']['forward_backward_ms']:.3f} ms against a roofline of "
                        f"{g['roofline_forward_backward_ms']:.3f} ms on the H200 ({g['roofline_fraction']:.0%} of "
                        "roofline speed; docs/triton-roofline.md)")
        lines.append(f"- triton, {row['batch']}x{row['channels']}x{row['height']}x{row['width']} {row['layout']} "
                     f"fwd+bwd: " + ", ".join(text))
    return lines


def _bench_model(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(details["markdown"].strip())
    return lines


def _train(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    losses = details["losses"]
    lines.append(f"{details['iterations']} iterations, loss {losses[0]:.3f} -> {losses[-1]:.3f} (mean of the "
                 f"first third {details['first_third_loss']:.3f}, last third {details['last_third_loss']:.3f}), "
                 f"{details['seconds_per_iteration'] * 1e3:.0f} ms per iteration (median of the logged windows), "
                 f"final mIoU {details['miou']:.3f}")
    return lines


def _evaluate(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(f"mIoU {details['miou']:.4f} (the training's own final evaluation: "
                 f"{details['training_final_miou']:.4f})")
    return lines


def _torchrun(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(f"`{details['banner']}`; losses " + ", ".join(f"{x:.3f}" for x in details["losses"]))
    return lines


def _setup(details: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines.append(details.get("note") or f"installed {details['wheels']} wheels ({details['how']}) into "
                                        f"{details['site']}")
    return lines


# The part names of scripts/gpu_check.py (PART_NAMES) and their renderers.
RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "compile-check": _compile_check, "triton-tests": _tests, "cuda-tests": _tests, "bench-float32": _bench,
    "bench-bfloat16": _bench, "bench-model": _bench_model, "train": _train, "evaluate": _evaluate,
    "torchrun": _torchrun, "setup": _setup,
}


def part_markdown(part: dict[str, Any]) -> list[str]:
    """One part's section: its heading, what its renderer makes of its details, the commands it
    ran and, when it did not pass, the end of its log."""
    details = part.get("details") or {}
    lines = ["", f"## {part['name']}: {part['status']}", ""]
    render = RENDERERS.get(part["name"])
    if render is not None and details:
        lines += render(details)
    if part.get("commands"):
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in part["commands"])]
    if part["status"] != "pass" and part.get("log_tail"):
        lines += ["", f"Last lines of {part['log']}:", "", "```", *part["log_tail"], "```"]
    return lines


