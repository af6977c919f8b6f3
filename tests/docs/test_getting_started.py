"""The getting-started page's runnable code blocks run as written.

A block is runnable when it is fenced as ```python and its first line is ``# runnable``
(docs/development.md). The blocks of the page run in order in one namespace, as a reader
pasting them into one session would.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "getting-started.md"
BLOCK = re.compile(r"^```python\n(# runnable\n.*?)^```", re.M | re.S)


def runnable_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_page_has_runnable_blocks() -> None:
    assert len(runnable_blocks(PAGE.read_text())) >= 2


def test_runnable_blocks_run() -> None:
    namespace: dict = {}
    for index, code in enumerate(runnable_blocks(PAGE.read_text())):
        exec(compile(code, f"{PAGE.name}[block {index}]", "exec"), namespace)
