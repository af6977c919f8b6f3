"""``make device-wheels``: the wheels ccnet needs on the GPU machine and does not find there.

The project's GPU machine (an H200) has Python 3.12 with PyTorch 2.11, Triton 3.6 and about 190
other packages (:data:`MACHINE_IMAGE`: pytest, hypothesis, scipy, OpenCV, matplotlib, ...), but no
package registry. This script, run where PyPI is reachable, downloads everything else that ccnet (its
``[project] dependencies``) and its CUDA tests (pytest, hypothesis) need, for CPython 3.12 on
manylinux x86_64, into one folder (``.device-wheels/``, git-ignored) that travels with the working
tree. ``make gpu-check`` installs it there with ``pip install --no-index --no-deps --target``.

The set is closed by reading every wheel's ``Requires-Dist`` (markers evaluated for the target
interpreter): each requirement must be met by a wheel of the folder (its version inside the
specifier), by what the GPU machine already has (:data:`GPU_MACHINE_HAS`), or by the standard
library; otherwise this fails loudly and writes nothing. ``make gpu-check`` repeats the check on
the target against the distributions actually installed there (:func:`problems` with
:func:`installed_distributions`).

Usage: ``python scripts/device_wheels.py [--dest .device-wheels]`` (needs ``pip`` and
``packaging``, both in the dev environment).
"""

from __future__ import annotations

import argparse
import email.parser
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "MANIFEST.json"

# The target interpreter: CPython 3.12 on Linux x86_64. PyTorch 2.11's own wheels need glibc 2.28,
# so manylinux_2_28 and older tags all run there.
TARGET_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")


def abis(python: str = TARGET_PYTHON) -> tuple[str, ...]:
    return (f"cp{python.replace('.', '')}", "abi3", "none")


def marker_environment(python: str = TARGET_PYTHON) -> dict[str, str]:
    """PEP 508 marker values of CPython ``python`` on Linux x86_64, no extras."""
    return {"python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
            "implementation_version": f"{python}.0", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "platform_release": "", "platform_version": "", "extra": ""}


MARKER_ENVIRONMENT = marker_environment()

# What the GPU machine's Python 3.12 has: the package list of its image (read on the machine,
# 2026-11-17), less what is shipped anyway (SHIPPED_ANYWAY: present there in a version nobody
# checked, with a floor that our wheels need). Anything else is not re-shipped: a second copy
# earlier on the path would shadow the machine's own build (and its pytest plugins would load
# into our pytest).
MACHINE_IMAGE = (
    "absl-py", "accelerate", "aiofiles", "aiohappyeyeballs", "aiohttp", "aiosignal", "annotated-doc", "anyio",
    "attrs", "botorch", "build", "certifi", "charset-normalizer", "chex", "click", "cloudpickle", "cmake",
    "colorama", "contourpy", "coverage", "cuda-bindings", "cuda-core", "cuda-pathfinder", "cuda-toolkit",
    "cupy-cuda13x", "cycler", "cython", "diffrax", "e3nn", "einops", "equinox", "etils", "execnet", "filelock",
    "flatbuffers", "flax", "fonttools", "formulaic", "frozenlist", "fsspec", "gpytorch", "grpcio", "h11", "h5py",
    "hf-xet", "httpcore", "httpx", "huggingface-hub", "humanize", "hypothesis", "idna", "imageio", "iniconfig",
    "interface-meta", "jax", "jax-cuda13-pjrt", "jax-cuda13-plugin", "jaxlib", "jaxtyping", "jinja2", "joblib",
    "kiwisolver", "lazy-loader", "lightning", "lightning-utilities", "linear-operator", "lineax", "llvmlite",
    "lxml", "markdown", "markdown-it-py", "markupsafe", "matplotlib", "mdurl", "meson", "ml-dtypes", "mpi4py",
    "mpmath", "msgpack", "multidict", "multipledispatch", "mypy-extensions", "nanobind", "narwhals", "networkx",
    "ninja", "numba", "numba-cuda", "numpy", "numpyro", "nvidia-cublas", "nvidia-cuda-cupti", "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime", "nvidia-cudnn-cu13", "nvidia-cufft", "nvidia-cufile", "nvidia-curand",
    "nvidia-cusolver", "nvidia-cusparse", "nvidia-cusparselt-cu13", "nvidia-ml-py", "nvidia-nccl-cu13",
    "nvidia-nvjitlink", "nvidia-nvshmem-cu13", "nvidia-nvtx", "onnx", "onnx-ir", "onnxruntime", "onnxscript",
    "opencv-python-headless", "optax", "opt-einsum", "opt-einsum-fx", "optimistix", "orbax-checkpoint",
    "packaging", "pandas", "pathspec", "patsy", "peft", "pillow", "pip", "pluggy", "portalocker",
    "prometheus-client", "propcache", "protobuf", "psutil", "pyarrow", "pybind11", "py-cpuinfo", "pygments",
    "pyparsing", "pyproject-hooks", "pyre-extensions", "pytest", "pytest-benchmark", "pytest-cov", "pytest-mock",
    "pytest-timeout", "pytest-xdist", "python-dateutil", "pytorch-lightning", "pyyaml", "regex", "requests",
    "rich", "sacrebleu", "safetensors", "scikit-build-core", "scikit-image", "scikit-learn", "scipy", "seaborn",
    "sentencepiece", "sentence-transformers", "setuptools", "shellingham", "simplejson", "six", "sortedcontainers",
    "statsmodels", "sympy", "tabulate", "tensorboard", "tensorboard-data-server", "tensorstore", "threadpoolctl",
    "tifffile", "tiktoken", "timm", "tokenizers", "toolz", "torch", "torchaudio", "torchdiffeq", "torch-geometric",
    "torchmetrics", "torchvision", "tqdm", "transformers", "treescope", "triton", "typer", "typing-extensions",
    "typing-inspect", "urllib3", "uvloop", "wadler-lindig", "werkzeug", "wheel", "wrapt", "xarray", "xxhash",
    "yarl", "zipp",
)
SHIPPED_ANYWAY = {"typing-extensions": "pydantic (albumentations) needs typing-extensions>=4.14, the machine's "
                                       "version is unknown"}
GPU_MACHINE_HAS: dict[str, str] = {name: "in the machine's image" for name in MACHINE_IMAGE
                                   if name not in SHIPPED_ANYWAY}
TEST_TOOLS = ("pytest", "hypothesis")  # what the CUDA tests (tests/cuda, tests/conftest.py) import
# Distributions that install the same module: any one meets a requirement on another.
SAME_MODULE = ({"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"},)
# Import names that differ from the distribution's (for interpreters holding a package without its metadata).
MODULE_OF = {"pyyaml": "yaml", "pillow": "PIL", "opencv-python": "cv2", "opencv-python-headless": "cv2",
             "opencv-contrib-python": "cv2", "opencv-contrib-python-headless": "cv2", "python-dateutil": "dateutil",
             "absl-py": "absl", "protobuf": "google.protobuf", "scikit-learn": "sklearn"}


def normalize(name: str) -> str:
    """PEP 503 name: ``PyYAML`` and ``pyyaml``, ``typing_extensions`` and ``typing-extensions`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(text: str):
    """A ``packaging`` Requirement (pip's vendored copy where ``packaging`` itself is missing)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(text)


def roots(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """ccnet's runtime dependencies and the test tools, less what the GPU machine has."""
    import tomllib  # Python 3.11+

    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    wanted = [*dependencies, *TEST_TOOLS, *SHIPPED_ANYWAY]
    return [spec for spec in wanted if normalize(requirement(spec).name) not in GPU_MACHINE_HAS]


def wheel_metadata(path: Path) -> email.message.Message:
    """The ``METADATA`` of a wheel (its ``*.dist-info/METADATA`` member)."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise ValueError(f"{path}: not a wheel (found {len(names)} */.dist-info/METADATA members)")
        return email.parser.Parser().parsestr(archive.read(names[0]).decode("utf-8"))


def wheel_top_level(path: Path) -> set[str]:
    """The importable top-level names a wheel installs (packages and modules, not its dist-info)."""
    with zipfile.ZipFile(path) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
    names = set()
    for top in tops:
        if top.endswith((".dist-info", ".data")):
            continue
        stem = top.split(".", 1)[0] if top.endswith((".py", ".so", ".pyd")) else top
        if stem.isidentifier():
            names.add(stem)
    return names


def folder_wheels(folder: Path) -> dict[str, tuple[str, Path]]:
    """``{normalized name: (version, path)}`` of the wheels in ``folder``."""
    found: dict[str, tuple[str, Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        metadata = wheel_metadata(path)
        name = normalize(metadata["Name"])
        if name in found:
            raise ValueError(f"{folder}: two wheels of {name}: {found[name][1].name} and {path.name}")
        found[name] = (metadata["Version"], path)
    return found


def requirements(path: Path, environment: Mapping[str, str]) -> list:
    """The ``Requires-Dist`` entries of a wheel that apply in ``environment`` (no extras)."""
    out = []
    for line in wheel_metadata(path).get_all("Requires-Dist") or []:
        entry = requirement(line)
        if entry.marker is None or entry.marker.evaluate(dict(environment)):
            out.append(entry)
    return out


def installed_distributions() -> dict[str, str]:
    """``{normalized name: version}`` of the distributions the running interpreter can import."""
    from importlib.metadata import distributions

    return {normalize(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}


def importable(distribution: str) -> bool:
    """Whether this interpreter can import the module of ``distribution`` (metadata or not)."""
    from importlib.util import find_spec

    module = MODULE_OF.get(distribution, distribution.replace("-", "_"))
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def problems(folder: Path, present: Mapping[str, str | None], environment: Mapping[str, str],
             stdlib: Iterable[str] = sys.stdlib_module_names,
             importable: Callable[[str], bool] | None = None) -> list[str]:
    """Every requirement of every wheel in ``folder`` that nothing meets, one line each.

    ``present``: what the interpreter has besides the folder, ``{name: version}``, a version of
    ``None`` meaning present but unknown (then only the name is checked); distributions of one
    module (:data:`SAME_MODULE`) stand in for each other. Requirements named like a
    standard-library module (the old ``typing`` backport) are met by the standard library.
    ``importable(name)``: a last resort for packages installed without metadata (version unchecked).
    """
    wheels = folder_wheels(folder)
    present = {normalize(k): v for k, v in present.items()}
    for group in SAME_MODULE:
        version = next((present[n] for n in sorted(group) if n in present), False)
        if version is not False:
            present.update({n: present.get(n, version) for n in group})
    stdlib = {normalize(m) for m in stdlib}
    found = []
    for name, (_, path) in wheels.items():
        for entry in requirements(path, environment):
            needed = normalize(entry.name)
            if needed in wheels:
                version, source = wheels[needed][0], wheels[needed][1].name
            elif needed in present:
                version, source = present[needed], "the interpreter"
            elif needed in stdlib or (importable is not None and importable(needed)):
                continue
            else:
                found.append(f"{name} requires {entry}: not in {folder} and not installed")
                continue
            if version is not None and not entry.specifier.contains(version, prereleases=True):
                found.append(f"{name} requires {entry}, but {source} has {needed} {version}")
    return found


def missing_requirements(folder: Path, present: Iterable[str], environment: Mapping[str, str],
                         stdlib: Iterable[str] = sys.stdlib_module_names) -> list[str]:
    """Requirements (as ``name specifier`` strings) that neither the folder, ``present`` nor the
    standard library provide: what to download next."""
    wheels = folder_wheels(folder)
    have = set(wheels) | {normalize(n) for n in present} | {normalize(m) for m in stdlib}
    wanted: dict[str, str] = {}
    for _, path in wheels.values():
        for entry in requirements(path, environment):
            name = normalize(entry.name)
            if name not in have:
                wanted.setdefault(name, f"{name}{entry.specifier}")
    return sorted(wanted.values())


def download(specs: list[str], dest: Path, python: str = TARGET_PYTHON) -> None:
    """``pip download`` of ``specs`` as CPython ``python`` manylinux x86_64 wheels, without dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--dest", str(dest)]
    for abi in abis(python):
        command += ["--abi", abi]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    print("downloading " + " ".join(specs), flush=True)
    subprocess.run([*command, *specs], check=True)


def collect(dest: Path, start: list[str], python: str = TARGET_PYTHON) -> None:
    """Download ``start``, then every requirement of the downloaded wheels the machine lacks, until closed."""
    wanted = start
    for _ in range(20):
        if not wanted:
            return
        download(wanted, dest, python)
        wanted = missing_requirements(dest, GPU_MACHINE_HAS, marker_environment(python))
    raise RuntimeError(f"the requirements did not close after 20 rounds; still missing: {wanted}")


def write_manifest(folder: Path, python: str = TARGET_PYTHON) -> dict:
    wheels = folder_wheels(folder)
    manifest = {
        "target": {"python": python, "platforms": list(PLATFORMS), "abis": list(abis(python))},
        "wheels": {name: {"version": version, "file": path.name, "bytes": path.stat().st_size,
                          "top_level": sorted(wheel_top_level(path))}
                   for name, (version, path) in wheels.items()},
        "assumed_on_the_gpu_machine": GPU_MACHINE_HAS,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".device-wheels", help="wheel folder (replaced)")
    parser.add_argument("--python-version", default=TARGET_PYTHON,
                        help="CPython version of the target (default: %(default)s, the GPU machine's)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device-wheels-", dir=args.dest.parent) as tmp:
        staging = Path(tmp) / "wheels"
        staging.mkdir()
        collect(staging, roots(), args.python_version)
        unmet = problems(staging, dict.fromkeys(GPU_MACHINE_HAS), marker_environment(args.python_version))
        if unmet:
            print("device-wheels: the requirements are not closed:\n  " + "\n  ".join(unmet), file=sys.stderr)
            return 1
        manifest = write_manifest(staging, args.python_version)
        if args.dest.exists():
            shutil.rmtree(args.dest)
        staging.rename(args.dest)
    total = sum(w["bytes"] for w in manifest["wheels"].values())
    for _, wheel in sorted(manifest["wheels"].items()):
        print(f"  {wheel['file']}  {wheel['bytes'] / 2**20:.1f} MB")
    print(f"{len(manifest['wheels'])} wheels, {total / 2**20:.1f} MB in {args.dest} "
          f"({time.perf_counter() - started:.0f} s); every requirement met by a wheel, the GPU machine or the "
          "standard library")
    return 0


if __name__ == "__main__":
    sys.exit(main())
