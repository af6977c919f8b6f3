import itertools

import numpy as np
import torch

from ccnet.engine.sampling import SeededDataset, TrainSampler


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_stream_is_deterministic_and_resumable():
    full = _take(TrainSampler(7, seed=3), 20)
    assert full == _take(TrainSampler(7, seed=3), 20)
    assert _take(TrainSampler(7, seed=3, start=9), 11) == full[9:]
    assert full != _take(TrainSampler(7, seed=4), 20)


def test_each_epoch_is_a_permutation():
    stream = [index for index, _ in _take(TrainSampler(5, seed=0), 15)]
    for epoch in range(3):
        assert sorted(stream[epoch * 5:(epoch + 1) * 5]) == list(range(5))


def test_ranks_split_each_epoch():
    ranks = [[i for i, _ in _take(TrainSampler(6, seed=1, rank=r, world_size=2), 3)] for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(6))
    seeds = [s for r in range(2) for _, s in _take(TrainSampler(6, seed=1, rank=r, world_size=2), 3)]
    assert len(set(seeds)) == 6


class _RandomDataset:
    transform = None

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return index, np.random.rand(), torch.rand(1).item()  # noqa: NPY002


def test_seeded_fetch_is_reproducible_and_leaves_global_rng_alone():
    dataset = SeededDataset(_RandomDataset())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = dataset[(1, 42)]
    assert torch.equal(torch.get_rng_state(), before)
    assert dataset[(1, 42)] == a
    assert dataset[(1, 43)] != a
