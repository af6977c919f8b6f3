"""The ``ccnet`` command line: one module per command, assembled here.

User mistakes (missing dataset root, unknown config key, wrong checkpoint for the config, bad
image) end with a one-line error and exit status 2, never a stack trace. Each command module
imports what it needs inside its ``run`` so that ``ccnet bench --help`` does not load the data
stack.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from ccnet.cli import (
    bench,
    demo,
    evaluate,
    explore,
    hub,
    interop,
    predict,
    prepare,
    reproduce,
    train,
    visualize_attention,
)
from ccnet.cli.common import one_line
from ccnet.cli.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccnet", description="CCNet: criss-cross attention for segmentation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    evaluate.add_parser(sub)
    predict.add_parser(sub)
    prepare.add_parser(sub)
    interop.add_parsers(sub)
    hub.add_parser(sub)
    bench.add_parser(sub)
    demo.add_parser(sub)
    visualize_attention.add_parser(sub)
    explore.add_parser(sub)
    reproduce.add_parser(sub)
    return parser


# The positional list of each command that takes KEY=VALUE config overrides.
_OVERRIDE_LISTS = ("config", "inputs", "overrides", "items")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``key=value`` overrides may also come after the options
    (``ccnet predict --checkpoint ck.pt img.png --output out/ eval.flip=true``), which argparse
    alone refuses once a command's positional list has been read."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = next((name for name in _OVERRIDE_LISTS if isinstance(getattr(args, name, None), list)), None)
        if target is None or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, target).extend(extra)
    return args


def _one_line_warnings(command: str, default: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that prints ccnet's own warnings (a truncated video, a gap in a
    folder of frames: classes defined in ccnet) as ``ccnet COMMAND: warning: ...``, one line, above
    any progress bar; other warnings as Python prints them."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if getattr(category, "__module__", "").startswith("ccnet."):
            from tqdm import tqdm

            tqdm.write(f"ccnet {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
        try:
            return args.func(args)
        except (ValueError, TypeError, OSError, FloatingPointError, KeyError) as error:
            print(f"ccnet {args.command}: error: {one_line(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"ccnet {args.command}: interrupted", file=sys.stderr)
            return 130


__all__ = ["build_parser", "main", "parse_args"]
