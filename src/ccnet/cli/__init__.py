"""The ``ccnet`` command line: one module per command, assembled here.

User mistakes (missing dataset root, unknown config key, wrong checkpoint for the config, bad
image) end with a one-line error and exit status 2, never a stack trace. Each command module
imports what it needs inside its ``run`` so that ``ccnet bench --help`` does not load the data
stack.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ccnet.cli import bench, demo, evaluate, interop, predict, prepare, reproduce, train
from ccnet.cli.common import one_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccnet", description="CCNet: criss-cross attention for segmentation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    evaluate.add_parser(sub)
    predict.add_parser(sub)
    prepare.add_parser(sub)
    interop.add_parsers(sub)
    bench.add_parser(sub)
    demo.add_parser(sub)
    reproduce.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, FloatingPointError, KeyError) as error:
        print(f"ccnet {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ccnet {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
