"""The two-key synthetic task: every grey object takes the colour of the key of its own kind."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data.synthetic import CONTEXT_CLASSES, SyntheticContextDataset, _ellipse_mask
from ccnet.data.synthetic_two_keys import KINDS, TwoKeySyntheticDataset


@pytest.fixture(scope="module")
def dataset() -> TwoKeySyntheticDataset:
    return TwoKeySyntheticDataset("train", size=(192, 192), seed=0)


def test_same_interface_and_classes_as_the_one_key_task(dataset):
    assert dataset.info == SyntheticContextDataset.INFO
    sample = dataset[3]
    assert sample["image"].shape == (3, 192, 192) and sample["label"].shape == (192, 192)
    image, label = dataset.render(3)
    assert np.array_equal(image, dataset.render(3)[0]) and np.array_equal(label, dataset.load(3)[1])
    assert not np.array_equal(image, TwoKeySyntheticDataset("val", size=(192, 192), seed=0).render(3)[0])


@pytest.mark.parametrize("index", range(12))
def test_each_grey_object_takes_the_class_of_the_key_of_its_kind(dataset, index):
    scene = dataset.layout(index)
    keys = scene["keys"]
    assert len(keys) == 2 and keys[0][3] != keys[1][3] and {k[4] for k in keys} == set(KINDS)
    class_of = {kind: cls for _, _, _, cls, kind in keys}
    kinds = [obj[0] for obj in scene["grey_objects"]]
    assert set(kinds) == set(KINDS)  # both kinds in every scene: two classes to tell apart
    image, label = dataset.render(index)
    for kind, _, _, cls in scene["grey_objects"]:
        assert cls == class_of[kind]
    for y, x, k, cls, kind in keys:
        assert (label[y:y + k, x:x + k] == cls).all()
        frame = image[y, x:x + k].astype(float).mean(0)  # the frame's top row
        assert np.abs(frame - KINDS[kind][0]).max() < 12, (kind, frame)
    # Both key classes appear on grey-object pixels outside the keys.
    grey = np.isin(label, CONTEXT_CLASSES)
    for y, x, k, *_ in keys:
        grey[y:y + k, x:x + k] = False
    assert set(np.unique(label[grey])) == {k[3] for k in keys}


def test_the_tint_tells_the_kinds_apart_and_the_objects_lie_beyond_the_keys(dataset):
    for index in range(20):
        scene = dataset.layout(index)
        image, _ = dataset.render(index)
        top = np.full(image.shape[:2], -1)  # which object is painted last at each pixel
        for i, (_, (y, x, h, w), ellipse, _) in enumerate(scene["grey_objects"]):
            top[y:y + h, x:x + w][_ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)] = i
        for i, (kind, *_) in enumerate(scene["grey_objects"]):
            if (top == i).sum() < 20:
                continue
            colour = image[top == i].astype(float).mean(0)
            assert (colour[2] - colour[0] < -30) == (kind == "sand"), (index, kind, colour)
        for _, (y, x, h, w), _, _ in scene["grey_objects"]:
            for ky, kx, k, _, _ in scene["keys"]:
                overlap = not (y + h <= ky or ky + k <= y or x + w <= kx or kx + k <= x)
                assert not overlap


def test_built_from_the_config():
    from ccnet.config import Config, ConfigError, apply_overrides
    from ccnet.engine.build import build_train_dataset, build_val_dataset

    config = apply_overrides(Config(), ["data.synthetic_task=two_keys"])
    assert isinstance(build_train_dataset(config), TwoKeySyntheticDataset)
    assert isinstance(build_val_dataset(config), TwoKeySyntheticDataset)
    assert type(build_val_dataset(Config())) is SyntheticContextDataset
    with pytest.raises(ConfigError, match=r"data\.synthetic_task: 'three' is not one of 'one_key', 'two_keys'"):
        apply_overrides(Config(), ["data.synthetic_task=three"])
