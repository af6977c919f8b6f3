"""Reading and writing files safely, in one place for every part of ccnet.

* Writes are atomic: a temporary file (or folder) next to the target, fsynced, then renamed into
  place, so readers see the old version or the new one, never half of one. The result gets the
  permissions the user's umask gives any new file (``0o666 & ~umask``; folders ``0o777 & ~umask``),
  not the ``0o600`` of the temporary file, so that others in the group can read a trained model.
* PyTorch files (checkpoints, published weights) are read with ``torch.load(weights_only=True)``
  only: nothing in them can run code. A file that would need more is refused with a message that
  says what is wrong with it, never with advice to turn safe loading off.
"""

from __future__ import annotations

import os
import pickletools
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "UnsafeFileError",
    "atomic_directory",
    "atomic_path",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "file_mode",
    "load_torch_file",
]


class UnsafeFileError(ValueError):
    """A PyTorch file that cannot be read safely: missing, truncated, corrupt, or pickled code."""


# -- permissions ------------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def file_mode(directory: bool = False) -> int:
    """The mode a new file (or folder) gets from the user's umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- atomic writes ----------------------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write it (with any library), and on a clean exit
    it is fsynced, given umask permissions and renamed over ``path``. On an error it is removed
    and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode()

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return atomic_write(path, write)


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``directory``; fill it, and on a clean exit it replaces
    ``directory`` (an existing one is moved aside first and removed after), so the target always
    holds either the old contents or the new, both complete. The caller decides beforehand
    whether an existing ``directory`` may be replaced."""
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    old: Path | None = None
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.chmod(child, file_mode())
        os.chmod(tmp, file_mode(directory=True))
        _fsync_dir(tmp)
        if directory.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / directory.name).exists() and not directory.exists():
            os.replace(old / directory.name, directory)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- safe reading ------------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _pickled_globals(path: Path) -> list[str] | None:
    """The ``module.name`` globals a pickle (plain, or the ``data.pkl`` of a PyTorch zip file)
    refers to, read from its opcodes without unpickling anything; None when it is no pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not names:
                    return None
                data = archive.read(names[0])
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return found
    except Exception:  # not a pickle, truncated, or a damaged zip: no opcodes to read
        return None


# Globals that torch.load(weights_only=True) itself rebuilds: tensors and their storages.
_TORCH_GLOBALS = re.compile(r"^(torch\.|collections\.OrderedDict$|_codecs\.encode$|builtins\.set$)")


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu", *, what: str = "PyTorch file",
                    mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear message per kind of bad file.

    ``what`` names the expected content in messages ("checkpoint", "weight file"); ``mmap`` maps
    the tensors instead of reading them (cheap when only small entries are wanted). Errors:
    ``FileNotFoundError`` (missing), :class:`UnsafeFileError` (a folder, truncated or corrupt, not
    a PyTorch file, or pickled objects other than tensors and plain containers, which are never
    unpickled). PyTorch's own text about ``weights_only`` is never passed on.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if path.is_dir():
        raise UnsafeFileError(f"{path}: is a folder, not a {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # every failure becomes one clear message
        globals_ = _pickled_globals(path)
        if globals_ is None:
            raise UnsafeFileError(f"{path}: not a readable {what}: it is not a PyTorch file, or it is truncated "
                                  f"or corrupt") from None
        foreign = [name for name in globals_ if not _TORCH_GLOBALS.match(name)]
        if foreign:
            raise UnsafeFileError(
                f"{path}: cannot be read safely: it holds Python objects other than tensors and plain "
                f"containers (it refers to {foreign[0]}), which could run code when unpickled; it was not loaded"
            ) from None
        detail = _first_line(error)
        if "weights_only" in str(error) or not detail.strip():
            detail = "uses pickle features that safe loading does not accept"
        raise UnsafeFileError(f"{path}: not a readable {what} (truncated or corrupt?): {detail}") from None
