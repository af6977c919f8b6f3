"""Render docs/configuration.md from the config dataclasses (src/ccnet/config.py): every key, its
type, default, allowed values or range, and the comment or docstring that explains it.
usage: python scripts/config_docs.py [--check]   (--check: exit 1 if docs/configuration.md is stale)"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import sys
import tokenize
import typing
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ccnet import config as cfg  # noqa: E402

OUTPUT = ROOT / "docs" / "configuration.md"
SOURCE = Path(cfg.__file__)

HEADER = """# Configuration

A run is configured by a YAML file (the published ones are under `configs/`) and `key.sub=value`
overrides on the command line, on top of the defaults below. `ccnet.config.load_config` checks
every key when a config is loaded, overridden or rebuilt from a checkpoint: unknown keys, wrong
types, values outside the allowed ones and numbers out of range are refused with a one-line error
naming the key, for example `eval.mode: 'slid' is not one of 'whole', 'slide'`.

This page is generated from `src/ccnet/config.py` by `python scripts/config_docs.py`
(a test checks that it is current).
"""


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """``(class name, field name) -> comment``: the comment lines right above a field plus the
    comment at the end of its line, joined."""
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above: list[str] = []
            line = item.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            parts = above + ([comments[item.lineno]] if item.lineno in comments else [])
            found[(node.name, item.target.id)] = " ".join(parts)
    return found


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "str"
    return cfg._type_name(tp)


def allowed(tp: Any, metadata: Any) -> str:
    """The allowed values (a ``Literal``) or range (``min`` / ``min_exclusive`` metadata)."""
    for option in (tp, *typing.get_args(tp)):
        if typing.get_origin(option) is Literal:
            return ", ".join(f"`{c}`" for c in typing.get_args(option))
    if "min" in metadata:
        return f">= {metadata['min']}"
    if "min_exclusive" in metadata:
        return f"> {metadata['min_exclusive']}"
    return ""


def show(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(rst: str) -> str:
    """A docstring's reStructuredText roles and literals (``:class:`x```, ````x````) as Markdown code."""
    return re.sub(r"``(.+?)``", r"`\1`", re.sub(r":\w+:`~?(.+?)`", r"`\1`", rst))


def table(instance: Any, prefix: str, comments: dict[tuple[str, str], str]) -> list[str]:
    hints = typing.get_type_hints(type(instance))
    rows = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            continue
        tp = hints[f.name]
        doc = comments.get((type(instance).__name__, f.name), "")
        rows.append(f"| `{prefix}{f.name}` | {cell(type_name(tp))} | {cell(show(value))} "
                    f"| {cell(allowed(tp, f.metadata))} | {cell(doc)} |")
    return rows


def render() -> str:
    comments = field_comments(SOURCE.read_text())
    config = cfg.Config()
    out = [HEADER, "## Top level", "", *table(config, "", comments), ""]
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        out += [f"## `{f.name}`", ""]
        doc = type(section).__doc__
        if doc and not doc.startswith(f"{type(section).__name__}("):  # not the dataclass's generated one
            out += [markdown(" ".join(line.strip() for line in doc.strip().splitlines() if line.strip())), ""]
        out += [*table(section, f"{f.name}.", comments), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale; run python scripts/config_docs.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
