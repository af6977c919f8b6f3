"""Training speed of finished or running runs, from their ``log.jsonl``.

    .venv/bin/python benchmarks/run_speed.py runs/synthetic-*/

Prints, per run, the iterations per second of each logged window (median, slowest, fastest)
and the training time they add up to. On a shared machine the same job varies up to 2x:
quote the range, not one figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def windows(run: Path) -> list[tuple[int, float]]:
    """``(iteration, seconds per iteration)`` of each logged training window of ``run``."""
    rows = []
    for line in (run / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "time_per_iter" in entry and "iteration" in entry:
            rows.append((int(entry["iteration"]), float(entry["time_per_iter"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with log.jsonl)")
    args = parser.parse_args()
    for run in args.runs:
        rows = windows(run)
        if not rows:
            print(f"{run}: no training windows logged")
            continue
        rates = [1.0 / t for _, t in rows]
        total, previous = 0.0, 0
        for iteration, seconds in rows:
            total += (iteration - previous) * seconds
            previous = iteration
        print(f"{run}: {previous} iterations in {total:.0f} s of training; it/s median {statistics.median(rates):.2f}, "
              f"slowest window {min(rates):.2f}, fastest {max(rates):.2f}")


if __name__ == "__main__":
    main()
