"""Benchmark results as Markdown tables (for the docs and README), JSON and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ccnet.files import atomic_write_text


def op_table(rows: list[dict[str, Any]], ceiling_gflops: float | None = None) -> str:
    """One line per configuration: times of each op, our speed-ups, GFLOP/s and peak memory;
    rows with the Triton kernels (CUDA) get their times, speed-ups and memory in three more columns."""
    triton = any("triton" in r["ops"] for r in rows)
    lines = [
        "| features | B | C | layout | fwd ms ours / official / mmcv | fwd speed-up vs official, mmcv "
        "| fwd+bwd ms ours / official / mmcv | fwd+bwd speed-up vs official, mmcv | ours GFLOP/s fwd, fwd+bwd "
        "| fwd+bwd peak MB ours / official / mmcv |"
        + (" triton ms fwd / fwd+bwd | triton fwd+bwd speed-up vs ours, official, mmcv "
           "| triton fwd+bwd peak MB (ratio to the best other) |" if triton else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if triton else ""),
    ]
    for r in rows:
        ops = r["ops"]
        ours = ops["ccnet"]
        names = ("ccnet", "official", "mmcv")
        fwd = " / ".join(f"{ops[n]['forward_ms']:.1f}" for n in names)
        train = " / ".join(f"{ops[n]['forward_backward_ms']:.1f}" for n in names)
        peak = (" / ".join(f"{ops[n]['forward_backward_peak_mb']:.0f}" for n in names)
                if "forward_backward_peak_mb" in ours else "-")
        rate = f"{ours['forward_gflops']:.0f}, {ours['forward_backward_gflops']:.0f}"
        if ceiling_gflops:
            rate += (f" ({ours['forward_gflops'] / ceiling_gflops:.0%}, "
                     f"{ours['forward_backward_gflops'] / ceiling_gflops:.0%} of matmul)")
        lines.append(
            f"| {r['height']}x{r['width']} | {r['batch']} | {r['channels']} | {r['layout']} | {fwd} "
            f"| {r['speedup_forward_vs_official']:.2f}x, {r['speedup_forward_vs_mmcv']:.2f}x | {train} "
            f"| {r['speedup_forward_backward_vs_official']:.2f}x, {r['speedup_forward_backward_vs_mmcv']:.2f}x "
            f"| {rate} | {peak} |" + (_triton_cells(r) if triton else "")
        )
    return "\n".join(lines)


def _triton_cells(row: dict[str, Any]) -> str:
    """The Triton kernels' three cells of an op-table row ("-" where they did not run)."""
    if "triton" not in row["ops"]:
        return " - | - | - |"
    entry = row["ops"]["triton"]
    others = ("ccnet", "official", "mmcv")
    speedups = ", ".join(f"{row[f'triton_speedup_forward_backward_vs_{n}']:.2f}x" for n in others)
    peak = "-"
    if "forward_backward_peak_mb" in entry:
        better = min(row["ops"][n]["forward_backward_peak_mb"] for n in others)
        peak = f"{entry['forward_backward_peak_mb']:.0f} ({entry['forward_backward_peak_mb'] / better:.2f}x)"
    return f" {entry['forward_ms']:.2f} / {entry['forward_backward_ms']:.2f} | {speedups} | {peak} |"


def block_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| block | layout | GFLOPs (FlopCounterMode) | forward peak MB | fwd+bwd peak MB | forward ms |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['block']} | {r['layout']} | {r['gflops']:.1f} | {r['forward_peak_mb']:.0f} | "
                     f"{r['forward_backward_peak_mb']:.0f} | {r['forward_ms']:.0f} |")
    lines.append("")
    for layout in dict.fromkeys(r["layout"] for r in rows):
        by_name = {r["block"]: r for r in rows if r["layout"] == layout}
        if "rcca_r2" in by_name and "non_local_x1" in by_name:
            rcca, nl = by_name["rcca_r2"], by_name["non_local_x1"]
            lines.append(
                f"{layout}: RCCA (R=2) against one non-local block: {1 - rcca['gflops'] / nl['gflops']:.1%} fewer "
                f"FLOPs, {nl['forward_peak_mb'] / rcca['forward_peak_mb']:.1f}x less forward peak memory, "
                f"{nl['forward_backward_peak_mb'] / rcca['forward_backward_peak_mb']:.1f}x less forward+backward "
                "peak memory."
            )
    return "\n".join(lines)


def block_comparison_table(rows: list[dict[str, Any]]) -> str:
    """Our RCCA block against the same weights composed with our op and with the baselines."""
    names = list(rows[0]["blocks"]) if rows else []
    slash = " / ".join(names)
    memory = bool(rows) and "forward_backward_peak_mb" in rows[0]["blocks"]["ccnet"]
    lines = [f"| B | layout | fwd ms {slash} | fwd speed-up vs " + ", ".join(names[1:])
             + f" | fwd+bwd ms {slash} | fwd+bwd speed-up vs " + ", ".join(names[1:])
             + (f" | fwd peak MB {slash} | fwd+bwd peak MB {slash} |" if memory else " |"),
             "|---|---|---|---|---|---|" + ("---|---|" if memory else "")]
    for r in rows:
        blocks = r["blocks"]
        cells = [" / ".join(f"{blocks[n]['forward_ms']:.0f}" for n in names),
                 ", ".join(f"{r[f'speedup_forward_vs_{n}']:.2f}x" for n in names[1:]),
                 " / ".join(f"{blocks[n]['forward_backward_ms']:.0f}" for n in names),
                 ", ".join(f"{r[f'speedup_forward_backward_vs_{n}']:.2f}x" for n in names[1:])]
        if memory:
            cells += [" / ".join(f"{blocks[n]['forward_peak_mb']:.0f}" for n in names),
                      " / ".join(f"{blocks[n]['forward_backward_peak_mb']:.0f}" for n in names)]
        lines.append(f"| {r['batch']} | {r['layout']} | " + " | ".join(cells) + " |")
    if rows:
        r = rows[0]
        lines += ["", f"RCCA block, R={r['recurrence']} (shared weights), {r['channels']} channels, query/key "
                  f"{r['qk_channels']}, {r['height']}x{r['width']}, {r['dtype']}; every variant has the same weights."]
        for r in rows:
            line = (f"B={r['batch']}: forward+backward {r['speedup_forward_backward_vs_mmcv']:.2f}x the mmcv block, "
                    f"{r['speedup_forward_backward_vs_official']:.2f}x the official one")
            if memory:
                line += (f"; fwd+bwd peak memory {r['memory_ratio_vs_mmcv']:.2f}x mmcv's, "
                         f"{r['memory_ratio_vs_official']:.2f}x the official's")
            lines.append(line + ".")
    return "\n".join(lines)


def model_table(rows: list[dict[str, Any]]) -> str:
    """One line per task and variant (memory format x AMP); speed-ups against each task's first variant."""
    lines = ["| task | input | layout | AMP | ms | speed-up | peak MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "-" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['task']} ({r['backbone']}, batch {r['batch']}) | {r['height']}x{r['width']} | "
                     f"{r['layout']} | {r['amp']} | {r['ms']:.1f} | {r['speedup']:.2f}x | {peak} |")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str | Path) -> None:
    """Write ``results`` as JSON atomically (a crash never leaves half a file)."""
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def plot(results: dict[str, Any], path: str | Path) -> None:
    """Horizontal bar charts: our speed-up over each baseline per configuration (forward and
    forward+backward; 1 = parity), and the block comparison (FLOPs and memory, log scale).
    Needs matplotlib (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    op_rows = results.get("op", [])
    block_rows = results.get("block", [])
    comparison_rows = results.get("block_vs_baselines", [])
    panels = (2 if op_rows else 0) + (1 if block_rows else 0) + (1 if comparison_rows else 0)
    if not panels:
        raise ValueError("nothing to plot: the results have no 'op', 'block' or 'block_vs_baselines' rows")
    height = max(4.0, 0.32 * len(op_rows) + 1.5)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, height), squeeze=False)
    axes = list(axes[0])
    if op_rows:
        labels = [f"{r['height']}x{r['width']} B{r['batch']} C{r['channels']} {r['layout'].replace('_', '-')}"
                  for r in op_rows]
        y = range(len(op_rows))
        for ax, key, title in ((axes.pop(0), "forward", "forward"),
                               (axes.pop(0), "forward_backward", "forward + backward")):
            for i, name in enumerate(("official", "mmcv")):
                values = [r[f"speedup_{key}_vs_{name}"] for r in op_rows]
                ax.barh([v + (i - 0.5) * 0.4 for v in y], values, 0.4, label=f"vs {name}")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_yticks(list(y), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("speed-up of ccnet (x, median times, same run)")
            ax.set_title(f"{title} ({op_rows[0]['dtype']})")
            ax.legend(loc="lower right")
    if block_rows:
        ax = axes.pop(0)
        block_rows = [r for r in block_rows if r["layout"] == block_rows[-1]["layout"]]
        names = [r["block"] for r in block_rows]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [r["gflops"] for r in block_rows], 0.4, label="GFLOPs")
        ax.bar([i + 0.2 for i in x], [r["forward_backward_peak_mb"] for r in block_rows], 0.4,
               label="fwd+bwd peak MB")
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_title(f"attention block at {block_rows[0]['height']}x{block_rows[0]['width']} "
                     f"({block_rows[0]['layout']})")
        ax.legend()
    if comparison_rows:
        ax = axes.pop(0)
        others = [n for n in comparison_rows[0]["blocks"] if n != "ccnet"]
        labels = [f"B{r['batch']} {key}" for r in comparison_rows for key in ("fwd", "fwd+bwd")]
        keys = [key for _ in comparison_rows for key in ("forward", "forward_backward")]
        rows = [r for r in comparison_rows for _ in range(2)]
        width = 0.8 / len(others)
        for i, name in enumerate(others):
            ax.barh([j + (i - (len(others) - 1) / 2) * width for j in range(len(labels))],
                    [r[f"speedup_{key}_vs_{name}"] for r, key in zip(rows, keys, strict=True)], width,
                    label=f"vs {name}")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(list(range(len(labels))), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("speed-up of our block (x, median times, same run)")
        r = comparison_rows[0]
        ax.set_title(f"RCCA block R={r['recurrence']}, {r['layout']}, {r['height']}x{r['width']}")
        ax.legend(loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def clip_table(rows: list[dict[str, Any]]) -> str:
    """The 3D block against the 2D block on the same clip, and their ratios at equal R."""
    r0 = rows[0]
    lines = [f"clip of {r0['frames']} frames, {r0['height']}x{r0['width']} features, {r0['channels']} channels:", "",
             "| attention | R | layout | GFLOPs | forward ms | fwd+bwd ms | forward peak MB | fwd+bwd peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attention']} | {r['recurrence']} | {r['layout']} | {r['gflops']:.2f} | "
                     f"{r['forward_ms']:.1f} | {r['forward_backward_ms']:.1f} | {r['forward_peak_mb']:.0f} | "
                     f"{r['forward_backward_peak_mb']:.0f} |")
    lines.append("")
    by_key = {(r["attention"], r["recurrence"], r["layout"]): r for r in rows}
    for (kind, loops, layout), three in by_key.items():
        two = by_key.get(("2d", loops, layout))
        if kind == "3d" and two is not None:
            lines.append(
                f"{layout}, R={loops}: 3D / 2D = {three['gflops'] / two['gflops']:.2f}x FLOPs, "
                f"{three['forward_ms'] / two['forward_ms']:.2f}x forward time, "
                f"{three['forward_backward_ms'] / two['forward_backward_ms']:.2f}x forward+backward time, "
                f"{three['forward_peak_mb'] / two['forward_peak_mb']:.2f}x forward peak memory, "
                f"{three['forward_backward_peak_mb'] / two['forward_backward_peak_mb']:.2f}x forward+backward peak "
                "memory.")
    return "\n".join(lines)
