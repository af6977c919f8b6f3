"""scripts/config_docs.py: docs/configuration.md is what the script renders from the config
dataclasses, and it lists every key with its allowed values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import config_docs

from ccnet.config import Config, flatten_keys

ROOT = Path(__file__).parents[2]


def test_committed_page_matches_the_script() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == config_docs.render(), \
        "docs/configuration.md is stale: python scripts/config_docs.py"


def test_every_key_has_a_row_with_its_allowed_values() -> None:
    page = config_docs.render()
    for key in flatten_keys(Config().to_dict()):
        assert f"| `{key}` |" in page, key
    assert "| `eval.mode` | str | `whole` | `whole`, `slide` |" in page
    assert "| `optim.lr` | float | `0.05` | > 0.0 |" in page
    sections = [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(Config(), f.name))]
    assert all(f"## `{name}`" in page for name in sections)


def test_comments_above_and_beside_a_field_are_its_description() -> None:
    source = "class A:\n    # first\n    # second\n    x: int = 1  # third\n    y: int = 2\n"
    assert config_docs.field_comments(source) == {("A", "x"): "first second third", ("A", "y"): ""}


def test_check_flags_a_stale_page(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    monkeypatch.setattr(config_docs, "OUTPUT", stale)
    monkeypatch.setattr(config_docs, "ROOT", tmp_path)
    assert config_docs.main(["--check"]) == 1
    assert config_docs.main([]) == 0 and config_docs.main(["--check"]) == 0
