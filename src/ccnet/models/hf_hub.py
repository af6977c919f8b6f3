"""Talking to the Hugging Face Hub: download a repo's files, upload a folder.

``huggingface_hub`` is the optional ``hub`` extra and is imported only here, only when a repo
id is actually used. Downloads go through ``snapshot_download`` (the standard cache,
``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` loads from that cache without a request). A local path
that exists always wins over a repo id of the same spelling. What the files are (a ccnet model
folder, its card) is `ccnet.models.hub`'s business; this module knows only the Hub.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ccnet.errors import InputError, MissingExtraError, PathError, UserFileNotFoundError

__all__ = ["INSTALL_HINT", "check_repo_id", "download", "is_repo_id", "upload"]

INSTALL_HINT = "pip install 'ccnet-pytorch[hub]'"
# "org/name": what a repo id looks like (huggingface_hub checks it strictly before any request).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


# A missing path with one of these endings is a mistyped weight file, not a repo id.
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".json", ".onnx")


def is_repo_id(src: object) -> bool:
    """True for a string (not a ``Path``) shaped like a Hub repo id (``org/name``) that is not an
    existing path nor a weight file name."""
    return (isinstance(src, str) and bool(_REPO_ID.match(src)) and not src.lower().endswith(_FILE_SUFFIXES)
            and not Path(src).exists())


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(f"loading or pushing by Hub repo id needs huggingface_hub: {INSTALL_HINT}") from None
    return huggingface_hub


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is shaped ``org/name``, else a one-line ValueError."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise InputError(f"{repo_id!r}: not a Hub repo id (expected org/name)")
    return repo_id


def download(repo_id: str, revision: str | None, files: Sequence[str]) -> Path:
    """The local snapshot folder of Hub repo ``repo_id`` at ``revision`` (default: main), with
    ``files`` downloaded (or found in the cache); one-line errors when that is not possible or
    when one of ``files`` is not in the repo."""
    hub = _hub()
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else str(repo_id)
    try:
        folder = Path(hub.snapshot_download(repo_id=str(repo_id), revision=revision, allow_patterns=list(files)))
    except HFValidationError as error:
        raise InputError(f"{where}: not a valid Hub repo id ({_first_line(error)})") from None
    except LocalEntryNotFoundError:
        raise UserFileNotFoundError(f"{where}: no such local path, and the Hub repo is not in the cache "
                                    f"(offline, HF_HUB_OFFLINE=1, or no connection)") from None
    except RevisionNotFoundError:
        raise UserFileNotFoundError(f"{where}: the Hub repo has no revision {revision!r}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise UserFileNotFoundError(f"{where}: no such local path, and no Hub repo of that name that this "
                                    f"token can read") from None
    except OSError as error:
        raise PathError(f"{where}: download from the Hub failed: {_first_line(error)}") from None
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise UserFileNotFoundError(f"{where}: the Hub repo holds no {' or '.join(missing)}; it is not a ccnet "
                                    f"model (those are pushed by push_to_hub / ccnet push-to-hub)")
    return folder


def upload(folder: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
           token: str | None = None, commit_message: str | None = None) -> Any:
    """Upload every file of ``folder`` to Hub repo ``repo_id`` (created if missing) in one commit;
    huggingface_hub's commit info."""
    check_repo_id(repo_id)
    api = _hub().HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message or "Upload ccnet model")
    except OSError as error:
        raise PathError(f"{repo_id}: upload to the Hub failed: {_first_line(error)}") from None
