"""The synthetic long-range-context dataset: determinism, sizes, contract, and its point: the class
of the grey objects is invisible locally and set by a key marker on other rows and columns."""

import numpy as np
import pytest
import torch

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD
from ccnet.data.synthetic import CONTEXT_CLASSES, KEY_COLOURS, LOCAL_CLASSES, SyntheticContextDataset


def test_info():
    info = SyntheticContextDataset.INFO
    assert info.name == "synthetic" and info.ignore_index == 255
    assert info.num_classes == 7 and len(info.palette) == 7
    assert set(LOCAL_CLASSES).isdisjoint(CONTEXT_CLASSES) and 0 not in LOCAL_CLASSES + CONTEXT_CLASSES
    assert SyntheticContextDataset().info is info


def test_deterministic_in_seed_split_index():
    a = SyntheticContextDataset("train", seed=3)
    b = SyntheticContextDataset("train", seed=3)
    for i in (0, 1, 99_999):
        ia, la = a.render(i)
        ib, lb = b.render(i)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a.render(0)[0], a.render(1)[0])
    assert not np.array_equal(a.render(0)[0], SyntheticContextDataset("val", seed=3).render(0)[0])
    assert not np.array_equal(a.render(0)[0], SyntheticContextDataset("train", seed=4).render(0)[0])
    im, lb = a.load(5)
    np.testing.assert_array_equal(im, a.render(5)[0])
    np.testing.assert_array_equal(lb, a.render(5)[1])


@pytest.mark.parametrize("size", [(33, 47), (256, 512), (128, 128), (8, 8), (96, 40)])
def test_any_size(size):
    ds = SyntheticContextDataset("val", size=size, num_samples=4)
    for i in range(4):
        image, label = ds.render(i)
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert label.shape == size and label.dtype == np.uint8
        values = set(np.unique(label).tolist())
        assert values <= set(range(ds.info.num_classes)) | {255}
        assert values & set(CONTEXT_CLASSES)  # a key (labelled with its class) and its grey objects


def test_getitem_contract():
    ds = SyntheticContextDataset("val", size=(40, 56))
    assert len(ds) == len(ds.samples) == 64
    assert len(SyntheticContextDataset("train")) == 100_000
    assert len(SyntheticContextDataset("train", num_samples=10)) == 10
    item = ds[3]
    assert item["name"] == "val_000003" and ds.samples[3] == "val_000003"
    assert item["image"].shape == (3, 40, 56) and item["image"].dtype == torch.float32
    assert item["label"].shape == (40, 56) and item["label"].dtype == torch.int64
    image, label = ds.render(3)
    expected = (image.astype(np.float32) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(item["label"].numpy(), label)
    assert ds[-1]["name"] == "val_000063"
    with pytest.raises(IndexError):
        ds[64]

    ds.transform = lambda im, lb: (torch.zeros(1), torch.ones(2))
    item = ds[0]
    assert item["image"].shape == (1,) and item["label"].shape == (2,)


def _scenes(n=240, size=(128, 128), aligned_prob=0.5):
    ds = SyntheticContextDataset("train", size=size, seed=11, aligned_prob=aligned_prob)
    return ds, [(ds.render(i), ds.layout(i)) for i in range(n)]


def test_context_classes_look_the_same_and_the_key_decides():
    """Grey-object pixels of the three context classes come from one appearance distribution
    (neutral grey, same level and noise); only the key marker's colour tells them apart."""
    _, scenes = _scenes()
    level = {c: [] for c in CONTEXT_CLASSES}
    noise = {c: [] for c in CONTEXT_CLASSES}
    for (image, label), scene in scenes:
        classes = set(np.unique(label).tolist()) & set(CONTEXT_CLASSES)
        assert len(classes) == 1  # one key, one context class per image
        (cls,) = classes
        assert cls == scene["key_class"]
        ky, kx, k = scene["key"]
        objects = label == cls
        objects[ky:ky + k, kx:kx + k] = False  # the key itself carries its class label
        pixels = image[objects].astype(np.float64)
        # Neutral grey: no channel carries the class.
        assert np.abs(pixels.mean(0) - pixels.mean()).max() < 3
        level[cls].append(pixels.mean())
        noise[cls].append(pixels.std(0).mean())
        # The key's colour (centre of the marker) is the colour of the class.
        centre = image[ky + k // 2 - 1:ky + k // 2 + 1, kx + k // 2 - 1:kx + k // 2 + 1].reshape(-1, 3).mean(0)
        distances = [np.linalg.norm(centre - np.array(c)) for c in KEY_COLOURS]
        assert CONTEXT_CLASSES[int(np.argmin(distances))] == cls
    counts = [len(level[c]) for c in CONTEXT_CLASSES]
    assert min(counts) > 50  # all three classes are common
    means = [np.mean(level[c]) for c in CONTEXT_CLASSES]
    assert max(means) - min(means) < 8, means  # grey level ~ U(140, 200) whatever the class
    stds = [np.mean(noise[c]) for c in CONTEXT_CLASSES]
    assert max(stds) - min(stds) < 1.0 and all(6 < s < 10 for s in stds), stds


def _key_geometry(label, scene):
    """(grey pixels share a row or column with the key, fraction of grey pixels that do,
    distance in pixels from the key square to the nearest grey pixel)."""
    ky, kx, k = scene["key"]
    ctx = np.isin(label, CONTEXT_CLASSES)
    ctx[ky:ky + k, kx:kx + k] = False  # the key square is labelled with its class too
    on_line = ctx.copy()
    on_line[:ky] = on_line[ky + k:] = False
    on_line[:, kx:kx + k] |= ctx[:, kx:kx + k]
    ys, xs = np.nonzero(ctx)
    dy = np.maximum(0, np.maximum(ky - ys, ys - (ky + k - 1)))
    dx = np.maximum(0, np.maximum(kx - xs, xs - (kx + k - 1)))
    return bool(on_line.any()), on_line.sum() / ctx.sum(), np.sqrt(dy**2 + dx**2).min()


def test_key_usually_on_no_row_or_column_of_its_objects_and_far_away():
    ds, scenes = _scenes()
    shares, fractions, nearest = [], [], []
    for (_, label), scene in scenes:
        share, fraction, distance = _key_geometry(label, scene)
        # Only the optional "aligned" object (one hop for R=1) may share the key's rows/columns.
        assert share == bool(scene["aligned"])
        shares.append(share)
        fractions.append(fraction)
        nearest.append(distance)
    shares, nearest = np.array(shares), np.array(nearest)
    assert abs(shares.mean() - ds.aligned_prob) < 0.1  # scenes with an aligned object
    assert np.mean(fractions) < 0.35  # ~73% of grey pixels are on none of the key's rows/columns
    assert ds.key_shares_line(int(np.argmax(shares))) and not ds.key_shares_line(int(np.argmin(shares)))
    # Far away (pixels at 128x128; the gap is 20% of the side in rows and in columns).
    assert nearest[~shares].min() >= 25 * np.sqrt(2) and np.median(nearest[~shares]) > 45
    assert nearest[shares].min() >= 25


def test_default_scenes_keep_most_grey_pixels_off_the_key_lines():
    # Half the default scenes have one object one hop from the key (R=1 can read it there); the
    # large majority of grey pixels share no row or column with the key.
    _, scenes = _scenes(n=120, aligned_prob=SyntheticContextDataset("train").aligned_prob)
    fractions = [_key_geometry(label, scene)[1] for (_, label), scene in scenes]
    assert 0.15 < np.mean(fractions) < 0.35


def test_no_aligned_objects_means_no_shared_lines():
    ds = SyntheticContextDataset("train", size=(128, 128), aligned_prob=0.0)
    assert not any(ds.key_shares_line(i) for i in range(100))


def test_local_classes_present_and_key_labelled_with_its_class():
    _, scenes = _scenes(n=60)
    seen = set()
    for (_, label), scene in scenes:
        seen |= set(np.unique(label).tolist())
        ky, kx, k = scene["key"]
        assert (label[ky:ky + k, kx:kx + k] == scene["key_class"]).all()
    assert set(LOCAL_CLASSES) | set(CONTEXT_CLASSES) | {0} <= seen


def test_key_can_be_ignored_instead():
    ds = SyntheticContextDataset("val", size=(128, 128), num_samples=2, key_label="ignore")
    (_, label), scene = ds.render(0), ds.layout(0)
    ky, kx, k = scene["key"]
    assert (label[ky:ky + k, kx:kx + k] == 255).all()
