"""The columns task: all three key colours in every scene, each grey object under its own key's
columns only, sharing no row with any key, far from it; every arrangement of keys occurs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ccnet.data.synthetic import CONTEXT_CLASSES, KEY_COLOURS
from ccnet.data.synthetic_columns import ColumnsSyntheticDataset

SCENES = 60


@pytest.fixture(scope="module")
def dataset() -> ColumnsSyntheticDataset:
    return ColumnsSyntheticDataset("val", num_samples=SCENES, size=(160, 160), seed=0)


def test_a_scene_is_a_pure_function_of_seed_split_and_index(dataset):
    image, label = dataset.render(5)
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8 and label.shape == (160, 160)
    again = ColumnsSyntheticDataset("val", size=(160, 160), seed=0).render(5)
    assert np.array_equal(image, again[0]) and np.array_equal(label, again[1])
    assert not np.array_equal(image, ColumnsSyntheticDataset("train", size=(160, 160), seed=0).render(5)[0])


def test_every_scene_holds_all_three_key_colours_once_each_in_disjoint_columns(dataset):
    for index in range(SCENES):
        scene = dataset.layout(index)
        keys = scene["keys"]
        assert sorted(cls for *_, cls in keys) == sorted(CONTEXT_CLASSES)
        sides = {k for _, _, k, _ in keys}
        assert len(sides) == 1  # same size: the same amount of each colour in every scene
        for (_, x0, k, _), (_, x1, _, _) in itertools.pairwise(keys):
            assert x0 + k <= x1  # left to right, no shared column
        image, _ = dataset.render(index)
        for y, x, k, cls in keys:  # the key's inside is its colour (up to the noise)
            inside = image[y + 3:y + k - 3, x + 3:x + k - 3].reshape(-1, 3).astype(float).mean(0)
            assert np.abs(inside - KEY_COLOURS[CONTEXT_CLASSES.index(cls)]).max() < 6


def test_each_grey_pixel_lies_under_its_own_key_only_and_shares_no_row_with_any_key(dataset):
    for index in range(SCENES):
        scene = dataset.layout(index)
        _, label = dataset.render(index)
        keys = scene["keys"]
        ky, k = keys[0][0], keys[0][2]
        grey = np.isin(label, CONTEXT_CLASSES)
        for y, x, side, _ in keys:
            grey[y:y + side, x:x + side] = False
        assert grey.any()
        rows, cols = np.nonzero(grey)
        assert not np.any((rows >= ky) & (rows < ky + k))  # no row shared with a key
        distance = np.where(rows >= ky + k, rows - (ky + k - 1), ky - rows)
        assert distance.min() > dataset.key_gap * 160  # far from the keys, beyond the gap
        for _, x, side, cls in keys:
            under = grey[:, x:x + side]
            assert np.all(label[:, x:x + side][under] == cls)  # its own key's class
        owner = np.full(160, -1)
        for i, (_, x, side, _) in enumerate(keys):
            owner[x:x + side] = i
        assert np.all(owner[cols] >= 0)  # every grey pixel is in some key's columns


def test_every_arrangement_occurs_so_no_image_wide_summary_gives_the_answer():
    dataset = ColumnsSyntheticDataset("train", size=(160, 160), seed=1)
    orders, edges = set(), set()
    for index in range(300):
        scene = dataset.layout(index)
        orders.add(tuple(cls for *_, cls in scene["keys"]))
        edges.add(scene["edge"])
    assert orders == set(itertools.permutations(CONTEXT_CLASSES)) and edges == {"top", "bottom"}
    # the same grey object position gets different classes in different scenes
    by_position = {}
    for index in range(300):
        for _, (_, x, _, _), _, cls in dataset.layout(index)["grey_objects"]:
            by_position.setdefault(x // 40, set()).add(cls)
    assert all(len(classes) == 3 for classes in by_position.values())


def test_keys_are_labelled_for_training_and_ignored_in_evaluation(dataset):
    train = ColumnsSyntheticDataset("train", size=(160, 160), seed=0)
    for data, expect_class in ((train, True), (dataset, False)):
        _, label = data.render(0)
        for y, x, k, cls in data.layout(0)["keys"]:
            assert np.all(label[y:y + k, x:x + k] == (cls if expect_class else 255))


def test_built_from_the_config():
    from ccnet.config import Config, apply_overrides
    from ccnet.engine.build import build_train_dataset, build_val_dataset

    config = apply_overrides(Config(), ["data.synthetic_task=columns", "data.synthetic_val_samples=128"])
    assert isinstance(build_train_dataset(config), ColumnsSyntheticDataset)
    assert len(build_val_dataset(config)) == 128
