"""The synthetic video dataset: deterministic clips, a key band in exactly one frame along a whole
side, grey objects that share a column (row) with it but never touch it, and motion."""

import numpy as np
import pytest
import torch

from ccnet.data.synthetic import CONTEXT_CLASSES, KEY_COLOURS, LOCAL_CLASSES
from ccnet.data.synthetic_video import SyntheticVideoDataset


@pytest.fixture(scope="module")
def dataset():
    return SyntheticVideoDataset("train", size=(64, 80), clip_length=4, seed=3)


def test_clips_are_pure_functions_of_seed_split_and_index(dataset):
    images, labels = dataset.render(5)
    again = SyntheticVideoDataset("train", size=(64, 80), clip_length=4, seed=3).render(5)
    assert np.array_equal(images, again[0]) and np.array_equal(labels, again[1])
    other = SyntheticVideoDataset("val", size=(64, 80), clip_length=4, seed=3).render(5)
    assert not np.array_equal(images, other[0])
    item = dataset[5]
    assert item["image"].shape == (3, 4, 64, 80) and item["label"].dtype == torch.int64
    assert item["score"].tolist() == [True] * 4 and item["name"] == "train_000005"


def test_key_band_in_one_frame_and_every_grey_pixel_on_its_lines(dataset):
    sides = set()
    for index in range(40):
        images, labels = dataset.render(index)
        layout = dataset.layout(index)
        key, cls, side = layout["key_frame"], layout["key_class"], layout["side"]
        sides.add(side)
        start, thickness = layout["band"]
        rows = side in ("top", "bottom")
        band = np.zeros(labels.shape[1:], dtype=bool)
        if rows:
            band[start:start + thickness] = True
        else:
            band[:, start:start + thickness] = True
        assert set(np.unique(labels)) <= {0, *LOCAL_CLASSES, cls}
        assert (labels[key][band] == cls).all()  # the band spans the whole side in the key frame
        colour = np.asarray(KEY_COLOURS[CONTEXT_CLASSES.index(cls)], dtype=np.float32)
        for t in range(dataset.clip_length):
            distance = np.abs(images[t].astype(np.float32) - colour).sum(-1)
            if t != key:  # no band, nothing of the key colour, in the other frames
                assert not (labels[t][band] == cls).any()
                assert (distance < 30).mean() < 0.002
            grey = labels[t] == cls
            grey[band if t == key else np.zeros_like(band)] = False
            if grey.any():  # grey objects keep a gap from the band: no grey pixel touches it
                ys, xs = np.nonzero(grey)
                across = ys if rows else xs
                assert np.all((across < start - 2) | (across >= start + thickness + 2))
    assert sides == {"top", "bottom", "left", "right"}


def test_objects_move_between_frames(dataset):
    moved = 0
    for index in range(10):
        _, labels = dataset.render(index)
        cls = dataset.layout(index)["key_class"]
        moved += not np.array_equal(labels[0] == cls, labels[-1] == cls)
    assert moved >= 7


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        SyntheticVideoDataset(size=(16, 64))
    with pytest.raises(ValueError, match="clip_length"):
        SyntheticVideoDataset(clip_length=0)
