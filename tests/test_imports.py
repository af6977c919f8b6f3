"""The package's import structure: no circles, arrows pointing one way (ops <- nn <- models <-
interop/engine <- cli), and commands that need nothing from the data stack run without it."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"

# What each part of the package may import from ccnet (besides itself). Leaves import nothing.
ALLOWED: dict[str, set[str]] = {
    "ccnet.errors": set(),
    "ccnet.version": set(),
    "ccnet.files": set(),
    "ccnet.data.info": set(),
    "ccnet.ops": set(),
    "ccnet.nn": {"ccnet.ops"},
    "ccnet.losses": set(),
    "ccnet.models": {"ccnet.ops", "ccnet.nn", "ccnet.files", "ccnet.version", "ccnet.data.info"},
    "ccnet.data": {"ccnet.files", "ccnet.data.info"},
    "ccnet.config": {"ccnet.data.info"},
    "ccnet.interop": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.files", "ccnet.version", "ccnet.data"},
    "ccnet.bench": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.losses", "ccnet.files"},
    "ccnet.engine": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.losses", "ccnet.data", "ccnet.config",
                     "ccnet.files", "ccnet.interop"},
    "ccnet.study": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.losses", "ccnet.data", "ccnet.config",
                    "ccnet.files", "ccnet.engine", "ccnet.bench"},
    "ccnet.viz": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.data", "ccnet.engine"},
    "ccnet.app": {"ccnet.data", "ccnet.engine", "ccnet.viz"},
    "ccnet.detection": {"ccnet.ops", "ccnet.nn", "ccnet.models", "ccnet.data", "ccnet.config", "ccnet.files",
                        "ccnet.interop", "ccnet.engine"},  # the optional Mask R-CNN part (torchvision)
    "ccnet.cli": {"*"},
    "ccnet": {"*"},  # the top-level package re-exports the public API
}
# Leaves every part may import: the user-facing error types.
EVERYWHERE = {"ccnet.errors"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SRC / "ccnet").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The ccnet modules ``module`` imports anywhere (functions included, TYPE_CHECKING blocks not)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in node.body for n in ast.walk(child)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ccnet"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if not base.startswith("ccnet"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {name for name in found if name in modules and name != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    """The most specific key of ALLOWED that ``module`` belongs to."""
    best = None
    for key in ALLOWED:
        if (module == key or module.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    if best is None:
        raise AssertionError(f"{module}: not placed in the layering; add its package to ALLOWED in {__file__}")
    return best


def test_every_import_points_down_the_layers():
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        allowed = ALLOWED[part]
        for target in targets:
            target_part = _part(target)
            if target_part == part or target_part in EVERYWHERE or "*" in allowed or any(
                    target_part == key or target_part.startswith(key + ".") for key in allowed):
                continue
            wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering: " + ", ".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    # A package __init__ that re-exports its submodules is not a circle by itself; edges into
    # a package from its own submodules are.
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


DATA_STACK = ("albumentations", "cv2", "cityscapesscripts")
BLOCKER = textwrap.dedent("""
    import sys

    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {name}")
            return None

    sys.meta_path.insert(0, Blocker())
""")


def _run_blocked(code: str, tmp_path: Path, blocked: tuple[str, ...] = DATA_STACK) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which importing any of ``blocked`` fails."""
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKER.replace("{blocked!r}", repr(blocked)) + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_blocker_blocks(tmp_path):
    result = _run_blocked("import albumentations\n", tmp_path)
    assert result.returncode != 0 and "blocked for this test" in result.stderr


@pytest.mark.slow
def test_core_and_tools_work_without_the_data_stack(tmp_path):
    result = _run_blocked("""
        import torch
        import ccnet, ccnet.ops, ccnet.nn, ccnet.models, ccnet.interop, ccnet.losses, ccnet.engine, ccnet.data
        from ccnet.cli import main
        from ccnet.engine import load_checkpoint, ConfusionMatrix  # pieces without the data stack
        for command in (["bench", "--help"], ["export", "--help"], ["convert", "--help"]):
            try:
                main(command)
            except SystemExit as exit:
                assert exit.code == 0, command
        # ccnet bench runs (tiny op sizes), and so do convert and export of a model folder.
        from ccnet.bench import attention
        attention.FEATURE_SIZES["tiny"] = (5, 7)
        assert main(["bench", "op", "--sizes", "tiny", "--batches", "1", "--channels", "8", "--qk-channels", "4",
                     "--repeats", "1", "--layouts", "nchw", "--no-memory"]) == 0
        model = ccnet.CCNet(num_classes=3, backbone="resnet18", output_stride=32, stem_widths=(8, 8, 16),
                            head_channels=16)
        model.save_pretrained("model")
        assert main(["convert", "model", "copy"]) == 0
        assert main(["export", "copy", "model.onnx", "--size", "64", "64"]) == 0
        loaded = [name for name in ("albumentations", "cv2", "cityscapesscripts") if name in sys.modules]
        assert not loaded, loaded
        print("OK")
    """, tmp_path)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_core_runs_without_triton(tmp_path):
    core = textwrap.dedent("""
        import sys
        import torch
        import ccnet, ccnet.ops, ccnet.nn, ccnet.models  # (torch.profiler, used by ccnet.bench, imports triton)
        from ccnet.ops import criss_cross_attention
        q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 3, 3, 4)
        criss_cross_attention(q, k, v), criss_cross_attention(q, k, v, backend="composite")
    """)
    # Installed or not, triton is imported only when backend="triton" runs ...
    result = _run_blocked(core + "print(sorted(name for name in sys.modules if name.startswith('triton')))\n",
                          tmp_path, blocked=())
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-3000:]
    # ... and without it, that call says how to install it.
    result = _run_blocked(core + textwrap.dedent("""
        try:
            criss_cross_attention(q, k, v, backend="triton")
        except ImportError as error:
            assert "pip install 'ccnet-pytorch[triton]'" in str(error), error
            print("OK")
    """), tmp_path, blocked=("triton",))
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
