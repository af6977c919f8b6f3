"""Every third-party package the code imports directly is declared in pyproject.toml (the core
dependencies or an extra), not merely installed as something else's requirement."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Where an import's distribution cannot be looked up (not installed in this environment, e.g.
# the detection stack, which lives in its own environment): import name -> distribution.
NOT_INSTALLED_HERE = {"torchvision": "torchvision", "pycocotools": "pycocotools"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    names = {re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0) for r in requirements}
    return {_normalise(n) for n in names}


def _imported(paths: list[Path]) -> dict[str, Path]:
    """Top-level third-party module names imported anywhere in ``paths`` -> one file importing it."""
    found: dict[str, Path] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("ccnet", "tests", "__future__"):
                    found.setdefault(top, path)
    return found


def _python_files() -> list[Path]:
    """The package, its tests and benchmarks (``scripts/`` run on machines of their own, the GPU
    machine's without this project's environment)."""
    folders = [ROOT / "src" / "ccnet", ROOT / "tests", ROOT / "benchmarks"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.py"))


def _first_party() -> set[str]:
    """Module names of the repository's own loose files (tests import scripts/*.py by name)."""
    return {p.stem for folder in ("scripts", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")}


def test_every_direct_import_is_declared():
    declared = _declared()
    distributions = packages_distributions()
    undeclared = []
    first_party = _first_party()
    for module, path in sorted(_imported(_python_files()).items()):
        if module in first_party:
            continue
        candidates = distributions.get(module) or [NOT_INSTALLED_HERE.get(module, module)]
        if not any(_normalise(c) in declared for c in candidates):
            undeclared.append(f"{module} ({', '.join(candidates)}; imported in {path.relative_to(ROOT)})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from scipy.io import loadmat\n    import numpy.linalg\n")
    assert set(_imported([source])) == {"scipy", "numpy"}
