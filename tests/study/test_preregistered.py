"""The committed pre-registered report is what the analysis renders from the committed run files,
and the committed plan is the plan the code builds (it cannot drift after the runs began)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ccnet.study.plan import StudySettings, plan_record
from ccnet.study.report import write_report

COMMITTED = Path(__file__).parents[2] / "docs" / "reproduction" / "preregistered"


def test_the_committed_plan_is_the_plan_the_code_builds():
    assert (COMMITTED / "plan.json").read_text() == json.dumps(plan_record(StudySettings.full()), indent=2)


def test_the_committed_report_and_verdicts_render_from_the_committed_runs(tmp_path):
    out = tmp_path / "study"
    shutil.copytree(COMMITTED, out, ignore=shutil.ignore_patterns("*.md", "*.png"))
    write_report(out)
    for name in ("report.md", "verdicts.md"):
        assert (out / name).read_text() == (COMMITTED / name).read_text(), name


def test_readme_shows_the_generated_verdicts_table():
    import re

    readme = (COMMITTED.parents[2] / "README.md").read_text()
    block = re.search(r"<!-- verdicts: [^>]*-->\n(.*?)<!-- /verdicts -->", readme, re.S)
    assert block, "README.md has no verdicts block"
    assert block.group(1) == (COMMITTED / "verdicts.md").read_text(), "run python scripts/readme_verdicts.py"
