"""Deterministic, resumable training data order.

Every training sample is addressed as ``(index, seed)``: the sampler fixes which images come at
which step and the seed of their augmentation, as a pure function of (run seed, step). Resuming
at step N therefore replays exactly the batches an uninterrupted run would have seen, whatever
the number of loader workers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, epoch, position) over 63 bits


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return (seed * _MIX + epoch * 1_000_003 + position) % (2**63 - 1)


class TrainSampler(Sampler[tuple[int, int]]):
    """Infinite shuffled stream of ``(index, augmentation seed)`` for one rank.

    Each epoch is a permutation seeded by ``(seed, epoch)``, padded to a multiple of
    ``world_size`` and dealt round-robin to the ranks. ``start`` skips that many of this rank's
    samples without loading them (resume).
    """

    def __init__(self, size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.rank, self.world_size, self.start = size, seed, rank, world_size, start

    def _epoch(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: (-len(order)) % self.world_size]  # pad so every rank gets as many
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_epoch = -(-self.size // self.world_size)
        epoch, position = divmod(self.start, per_epoch)
        while True:
            indices = self._epoch(epoch)
            for pos in range(position, per_epoch):
                yield indices[pos], sample_seed(self.seed, epoch, pos * self.world_size + self.rank)
            epoch, position = epoch + 1, 0


class SeededDataset(Dataset):
    """Fetches ``dataset[index]`` with every RNG (and the transform's own) seeded by ``seed``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        # Without loader workers this runs in the training process: leave its RNGs (dropout, ...)
        # exactly as they were.
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002 - augmentation libraries draw from it
            torch.manual_seed(seed)
            transform = getattr(self.dataset, "transform", None)
            for name in ("set_seed", "set_random_seed"):
                if callable(getattr(transform, name, None)):
                    getattr(transform, name)(seed % 2**32)
                    break
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])  # noqa: NPY002
            torch.set_rng_state(saved[2])
