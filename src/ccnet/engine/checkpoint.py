"""Training checkpoints: written atomically, read without running code.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``. Writes and reads go through `ccnet.files`: atomic writes
(a crash mid-write never leaves a corrupt checkpoint behind) and safe reads.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccnet.errors import CheckpointError
from ccnet.files import load_torch_file

FORMAT_VERSION = 1


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `ccnet.files.atomic_save`, safely (`ccnet.files.load_torch_file`)."""
    checkpoint = load_torch_file(path, map_location, what="checkpoint")
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: not a ccnet checkpoint (no 'model' entry)")
    return checkpoint


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
