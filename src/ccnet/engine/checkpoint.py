"""Training checkpoints: written atomically, read without running code.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``. Writes and reads go through `ccnet.files`: atomic writes
(a crash mid-write never leaves a corrupt checkpoint behind) and safe reads.

Every checkpoint records ``"format": FORMAT_VERSION``; `load_checkpoint` refuses a format newer
than this code reads. Its stored config is read by `ccnet.config.config_from_dict`, which first
migrates keys renamed or removed since the checkpoint was written (`ccnet.config.RENAMED_KEYS`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ccnet.config import Config, apply_overrides, config_from_dict, load_config
from ccnet.data.info import DatasetInfo
from ccnet.errors import CheckpointError, ConfigError
from ccnet.files import load_torch_file

# The layout of the checkpoint dict the trainer writes; raise it when that layout changes
# incompatibly (and teach `load_checkpoint` to read the older one).
FORMAT_VERSION = 1


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `ccnet.files.atomic_save`, safely (`ccnet.files.load_torch_file`)."""
    checkpoint = load_torch_file(path, map_location, what="checkpoint")
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: not a ccnet checkpoint (no 'model' entry)")
    check_format(checkpoint, path)
    return checkpoint


def check_format(checkpoint: dict[str, Any], path: str | Path) -> int:
    """The checkpoint's format version; one that this code cannot read is refused. Checkpoints
    without a ``format`` entry are read as format 1 (the first layout)."""
    version = checkpoint.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: 'format' is {version!r}, not a checkpoint format version (1, 2, ...)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this ccnet-pytorch reads "
                              f"(up to {FORMAT_VERSION}); upgrade ccnet-pytorch")
    return version


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, as tensors and plain values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what libraries draw from
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_compatible(checkpoint: dict[str, Any], config: Config, path: str | Path) -> None:
    """A checkpoint can only continue (or be evaluated as) the model it was trained as."""
    stored = config_from_dict(checkpoint["config"]) if "config" in checkpoint else None
    if stored is None:
        return
    for section in ("model",):
        theirs, ours = getattr(stored, section).__dict__, getattr(config, section).__dict__
        for key in ours:
            if theirs[key] != ours[key]:
                raise ConfigError(
                    f"{path}: checkpoint was trained with {section}.{key}={theirs[key]!r} "
                    f"but the config has {ours[key]!r}"
                )
    if stored.loss.consistency != config.loss.consistency:
        raise ConfigError(f"{path}: checkpoint has loss.consistency={stored.loss.consistency}, config differs")


def checkpoint_config(checkpoint: dict[str, Any], path: str, config_path: str | None, overrides: Sequence[str], *,
                      check: Callable[[dict[str, Any], Any, str], None]):
    """The config to use a training checkpoint with (a config file, which ``check`` verifies
    describes the checkpoint's model, else the checkpoint's own; overrides on top) and the
    checkpoint's dataset info (class names)."""
    if config_path is not None:
        config = load_config(config_path, overrides)
    elif "config" in checkpoint:
        config = apply_overrides(config_from_dict(checkpoint["config"]), overrides)
    else:
        raise CheckpointError(f"{path}: checkpoint stores no config; give the config file too")
    check(checkpoint, config, path)
    if "info" not in checkpoint:
        raise CheckpointError(f"{path}: checkpoint stores no class names ('info'); it was not written by ccnet train")
    return config, DatasetInfo.from_dict(checkpoint["info"])


def load_checkpoint_weights(model: nn.Module, checkpoint: dict[str, Any], path: str) -> None:
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
