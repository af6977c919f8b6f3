"""Copy the pre-registered study's generated verdicts table (docs/reproduction/preregistered/
verdicts.md) into README.md between its ``<!-- verdicts -->`` markers, so README never retypes it.
usage: python scripts/readme_verdicts.py [--check]   (--check: exit 1 if README is stale)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = ROOT / "docs" / "reproduction" / "preregistered" / "verdicts.md"
BLOCK = re.compile(r"(<!-- verdicts: [^>]*-->\n)(.*?)(<!-- /verdicts -->)", re.S)


def updated(readme: str, verdicts: str) -> str:
    if not BLOCK.search(readme):
        raise SystemExit("README.md: no <!-- verdicts: ... --> ... <!-- /verdicts --> block")
    return BLOCK.sub(lambda m: m.group(1) + verdicts.rstrip("\n") + "\n" + m.group(3), readme, count=1)


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    new = updated(readme, VERDICTS.read_text())
    if "--check" in sys.argv[1:]:
        if new != readme:
            print("README.md: the verdicts table differs from verdicts.md; run python scripts/readme_verdicts.py")
            return 1
        return 0
    (ROOT / "README.md").write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
