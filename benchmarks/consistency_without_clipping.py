"""Does the category consistent loss hurt only because of gradient clipping? (ccnet reproduce found it did hurt)

    .venv/bin/python benchmarks/consistency_without_clipping.py --output runs/ccl_noclip --seeds 0 1

Trains the study's RCCA R=2 run with and without the piece-wise consistency loss (``ccnet.study.plan``:
the same size, iterations and settings as ``ccnet reproduce``), but with gradient clipping off
(``--clip-grad-norm null``, the default) or at another limit, and prints each run's final mIoU (or
that it diverged). Runs already finished are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ccnet.config import apply_overrides
from ccnet.study.plan import StudySettings, run_config
from ccnet.study.runner import FINISHED, STATUS_NAME, run_status, train_one

VARIANTS = ("rcca_r2", "ccl_piecewise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("runs/ccl_noclip"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--clip-grad-norm", default="null",
                        help="optim.clip_grad_norm for every run (default: null, off)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        for variant in args.variants:
            path = args.output / f"clip-{args.clip_grad_norm}" / variant / f"seed{seed}"
            if run_status(path) not in FINISHED:
                overrides = [f"optim.clip_grad_norm={args.clip_grad_norm}"]
                train_one(apply_overrides(run_config(variant, seed, StudySettings.full()), overrides), path)
            status = json.loads((path / STATUS_NAME).read_text())
            result = (f"mIoU {100 * json.loads((path / 'metrics.json').read_text())['miou']:.1f}"
                      if status["status"] == "done" else f"{status['status']}: {status.get('error', '')}")
            print(f"{variant} seed {seed}, clip_grad_norm={args.clip_grad_norm}: {result}", flush=True)


if __name__ == "__main__":
    main()
