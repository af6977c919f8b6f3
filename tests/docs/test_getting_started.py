"""The getting-started page's runnable code blocks, and README's Python example, run as written.

On the page a block is runnable when it is fenced as ```python and its first line is
``# runnable`` (docs/development.md); README's every ```python block runs. The blocks of one
file run in order in one namespace, as a reader pasting them into one session would.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "getting-started.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(# runnable\n.*?)^```", re.M | re.S)
ANY_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def runnable_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_page_has_runnable_blocks() -> None:
    assert len(runnable_blocks(PAGE.read_text())) >= 2


@pytest.mark.parametrize(
    ("path", "blocks"),
    [(PAGE, runnable_blocks), (README, ANY_BLOCK.findall)],
    ids=["getting-started", "README"],
)
def test_blocks_run(path: Path, blocks) -> None:
    found = blocks(path.read_text())
    assert found, f"{path.name}: no Python block"
    namespace: dict = {}
    for index, code in enumerate(found):
        exec(compile(code, f"{path.name}[block {index}]", "exec"), namespace)
