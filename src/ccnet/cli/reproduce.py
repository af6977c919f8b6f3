"""``ccnet reproduce``: the paper's ablations on the synthetic benchmark, with a generated report."""

from __future__ import annotations

import argparse
import shlex

from ccnet.cli.common import check_output

EPILOG = """experiments (the pre-registered study, plan.json; --only takes these names):
  loops192        R=0 / 1 / 2 on the one-key task at 192 px, 4 seeds
  columns         none / PPM / ASPP / non-local / RCCA R=2 on the columns task, 3 seeds
  ccl_columns     RCCA R=2 with the consistency loss off / quadratic / piece-wise (warm-up), columns task
  stability       the two consistency-loss forms without clipping at 64 px, 30 seeds each
the first study's ablations (one-key task, 160 px; --only loops, context, consistency, two_keys) and
variants: none, rcca_r1/r2/r3, ppm, aspp, nonlocal, ccl_quadratic, ccl_piecewise, two_keys_*, and the
experiments' own (loops192_none, columns_ppm, stability_ccl_piecewise, ...)

examples:
  ccnet reproduce --output runs/study --threads 1 --only loops192 stability    # one process ...
  ccnet reproduce --output runs/study --threads 1 --only columns ccl_columns   # ... and another
  ccnet reproduce --output runs/study                  # again after an interruption: finished runs are kept
  ccnet reproduce --output runs/pilot --only columns_rcca_r2 --seeds 100   # a pilot seed (never in results)
  ccnet reproduce --quick --output /tmp/study          # pipeline check in about a minute (numbers mean nothing)
  ccnet reproduce --output runs/study --report-only
"""


def run(args: argparse.Namespace) -> int:
    from ccnet.study import StudySettings, reproduce, with_overrides
    from ccnet.study.report import write_report
    from ccnet.study.runner import FINISHED

    check_output(args.output, "folder")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.report_only:
        write_report(args.output)
        return 0
    settings = with_overrides(StudySettings.quick() if args.quick else StudySettings.full(), args.seeds,
                              args.iterations)
    statuses = reproduce(args.output, settings, only=args.only, command=_command(args), quick=args.quick,
                         seeds_given=bool(args.seeds))
    unfinished = [f"{v} seed {s}" for (v, s), state in statuses.items() if state not in FINISHED]
    print(f"report: {args.output}/report.md")
    if unfinished:
        print(f"{len(unfinished)} run(s) failed: {', '.join(unfinished)}; rerun the same command to retry them")
        return 1
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this invocation (recorded in the report)."""
    parts = ["ccnet", "reproduce", "--output", str(args.output)]
    if args.seeds:
        parts += ["--seeds", *map(str, args.seeds)]
    if args.iterations is not None:
        parts += ["--iterations", str(args.iterations)]
    if args.only:
        parts += ["--only", *args.only]
    if args.quick:
        parts.append("--quick")
    return " ".join(shlex.quote(p) for p in parts)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reproduce", help="reproduce the paper's ablations on the synthetic benchmark, with a report",
        description="Train every variant of the paper's ablations (loops R=0..3; context modules none/PPM/ASPP/"
                    "non-local/RCCA; category consistent loss off/quadratic/piece-wise) on the synthetic "
                    "long-range benchmark, several seeds each, one run at a time; measure each variant's cost; "
                    "write report.md and PNG plots. Resumable: finished runs are kept, an interrupted run "
                    "continues from its checkpoint.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", metavar="DIR", default="runs/reproduce",
                        help="study folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N",
                        help="seeds to train, for every selected variant (default: each experiment's own, "
                             "the first study's 0 1 2; --quick: 0 1)")
    parser.add_argument("--iterations", type=int, metavar="N",
                        help="training iterations per run (default: 250; --quick: 2)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="train only these variants or ablations")
    parser.add_argument("--quick", action="store_true",
                        help="a pipeline check: 32x32 scenes, 2 iterations of batch 2; the numbers mean nothing")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: PyTorch's choice; on a machine shared with other jobs 1 "
                             "can be much faster than 2)")
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report from the runs there")
    parser.set_defaults(func=run)
