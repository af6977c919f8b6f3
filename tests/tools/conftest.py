"""The repository's tools under scripts/ (``make device-wheels``, ``make gpu-check``), importable by
name, and a maker of small wheels for their tests."""

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))


@pytest.fixture
def make_wheel():
    """``make_wheel(folder, name, version, requires=(), modules={"pkg/__init__.py": "..."})``: a wheel file."""

    def make(folder: Path, name: str, version: str, requires=(), modules=None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        stem = name.replace("-", "_")
        modules = {f"{stem}/__init__.py": f"VERSION = {version!r}\n"} if modules is None else modules
        metadata = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
        info = f"{stem}-{version}.dist-info"
        files = {**modules, f"{info}/METADATA": metadata,
                 f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
        files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
        path = folder / f"{stem}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            for member, text in files.items():
                archive.writestr(member, text)
        return path

    return make
