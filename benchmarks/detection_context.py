"""Mask R-CNN on the synthetic long-range-context instance task: RCCA vs non-local vs no block.

Writes the COCO-format dataset (``ccnet prepare synthetic-coco``) if missing, trains
``configs/synthetic_maskrcnn.yaml`` once per context block and seed, one run at a time, and
prints a Markdown table of COCOeval box / mask AP, with the AP of the local classes (recognisable
from their own pixels) and of the context classes (decided by the distant key) apart.

    OMP_NUM_THREADS=1 .venv-detection/bin/python benchmarks/detection_context.py --runs runs/detection-context
    .venv-detection/bin/python benchmarks/detection_context.py --runs runs/detection-context --summarize

Needs the [detection] extra. One run takes about 5-8 minutes on a busy 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

LOCAL = ("stripes", "checker", "solid")
CONTEXT = ("context_red", "context_green", "context_blue")
BLOCKS = ("none", "rcca", "nonlocal")
NAMES = {"none": "no block (baseline)", "rcca": "RCCA, R=2", "nonlocal": "non-local"}


def _mean(values: dict[str, float], names: tuple[str, ...]) -> float:
    return 100 * sum(values[n] for n in names) / len(names)


def summarize(runs: Path, seeds: list[int]) -> str:
    lines = ["| block | seed | box AP | mask AP | box AP50 | box AP local | box AP context | mask AP local | "
             "mask AP context | wall time |", "|---|---|---|---|---|---|---|---|---|---|"]
    totals: dict[str, list[list[float]]] = {block: [] for block in BLOCKS}
    for seed in seeds:
        for block in BLOCKS:
            path = runs / f"{block}-s{seed}" / "metrics.json"
            if not path.is_file():
                continue
            m = json.loads(path.read_text())
            timing = runs / f"{block}-s{seed}" / "wall_time.json"
            seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else float("nan")
            row = [100 * m["bbox"]["AP"], 100 * m["segm"]["AP"], 100 * m["bbox"]["AP50"],
                   _mean(m["bbox_per_category"], LOCAL), _mean(m["bbox_per_category"], CONTEXT),
                   _mean(m["segm_per_category"], LOCAL), _mean(m["segm_per_category"], CONTEXT)]
            totals[block].append(row)
            cells = " | ".join(f"{v:.1f}" for v in row)
            lines.append(f"| {NAMES[block]} | {seed} | {cells} | {seconds:.0f} s |")
    for block in BLOCKS:
        if totals[block]:
            mean = [sum(col) / len(col) for col in zip(*totals[block], strict=True)]
            lines.append(f"| **{NAMES[block]}, mean** | {len(totals[block])} seeds | "
                         + " | ".join(f"{v:.1f}" for v in mean) + " | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/detection-context"), help="output folder of the runs")
    parser.add_argument("--data", type=Path, default=Path("data/synthetic-coco"), help="the synthetic COCO folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--summarize", action="store_true", help="only print the table of finished runs")
    args = parser.parse_args()
    ccnet = [sys.executable, "-m", "ccnet.cli"]
    if not args.summarize:
        if not (args.data / "annotations" / "instances_val.json").is_file():
            subprocess.run([*ccnet, "prepare", "synthetic-coco", str(args.data)], check=True)
        for seed in args.seeds:
            for block in BLOCKS:
                out = args.runs / f"{block}-s{seed}"
                if (out / "metrics.json").is_file():
                    continue
                start = time.perf_counter()
                subprocess.run([*ccnet, "train", "configs/synthetic_maskrcnn.yaml", f"data.root={args.data}",
                                f"detection.context={block}", f"seed={seed}", "--output", str(out), "--no-progress"],
                               check=True)
                (out / "wall_time.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    print(summarize(args.runs, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
