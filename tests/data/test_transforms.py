"""Train/eval transforms: image-label alignment, padding, flip with label swap, dtypes, seeding."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ccnet.data import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, normalize
from ccnet.data.lip import LIP_INFO
from ccnet.data.transforms import HorizontalFlipWithLabelSwap

# Six classes, each painted in a corner colour of the RGB cube: far apart, so a pixel's colour
# names its class even after bilinear resampling inside a region.
COLOURS = np.array(
    [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)],
    dtype=np.uint8,
)
MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)


def blocks(height: int, width: int, block: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixel colour encodes its label (random classes in block x block squares)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(COLOURS), (-(-height // block), -(-width // block)))
    label = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width].astype(np.uint8)
    return COLOURS[label], label


def denormalize(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy() * STD + MEAN


def nearest_class(colours: np.ndarray) -> np.ndarray:
    distance = ((colours[..., None, :] - COLOURS.astype(np.float32)) ** 2).sum(-1)
    return distance.argmin(-1)


def interior(label: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label (away from region edges and borders)."""
    padded = np.pad(label, 1, mode="edge")
    same = np.ones(label.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] == label
    return same


def test_output_types_and_shapes():
    image, label = blocks(40, 56)
    x, y = build_train_transform((24, 32))(image, label)
    assert x.shape == (3, 24, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.shape == (24, 32) and y.dtype == torch.int64


def test_crop_and_flip_keep_every_pixel_aligned():
    image, label = blocks(40, 56)
    transform = build_train_transform((24, 32), scale_range=None, photometric=False)
    for seed in range(10):
        transform.set_seed(seed)
        x, y = transform(image, label)
        y = y.numpy()
        assert (y != 255).all()
        colours = denormalize(x)
        np.testing.assert_allclose(colours, COLOURS[y].astype(np.float32), atol=0.01)


def test_random_scale_keeps_image_and_label_aligned():
    image, label = blocks(40, 56, block=6)
    transform = build_train_transform((32, 40), scale_range=(0.5, 2.0), photometric=False)
    checked = 0
    for seed in range(20):
        transform.set_seed(seed)
        x, y = transform(image, label)
        y = y.numpy()
        valid = y != 255
        predicted = nearest_class(denormalize(x))
        inner = valid & interior(y)
        assert (predicted[inner] == y[inner]).all(), f"seed {seed}: misaligned interior pixels"
        assert (predicted[valid] == y[valid]).mean() > 0.85  # region edges are blended by bilinear
        checked += inner.sum()
    assert checked > 5000


def test_padding_gives_ignore_and_zero_image():
    image, label = blocks(10, 14)
    transform = build_train_transform((20, 24), scale_range=None, flip=False, photometric=False)
    x, y = transform(image, label)
    y = y.numpy()
    assert (y[:10, :14] != 255).all()
    assert (y[10:] == 255).all() and (y[:, 14:] == 255).all()
    assert x[:, 10:].abs().max() < 0.01 and x[:, :, 14:].abs().max() < 0.01  # the mean colour
    x, y = build_train_transform((20, 24), scale_range=None, ignore_index=254)(image, label)
    assert (y == 254).sum() == 20 * 24 - 10 * 14


def test_flip_swaps_left_and_right_labels():
    # Left half: left arm (14), coloured red; right half: background (0), black.
    label = np.zeros((8, 16), dtype=np.uint8)
    label[:, :8] = 14
    image = np.zeros((8, 16, 3), dtype=np.uint8)
    image[:, :8] = (255, 0, 0)
    transform = build_train_transform((8, 16), scale_range=None, photometric=False, flip_lut=LIP_INFO.flip_lut())
    outcomes = set()
    for seed in range(16):
        transform.set_seed(seed)
        x, y = transform(image, label)
        red = denormalize(x)[..., 0] > 127
        if red[:, :8].all():  # not flipped
            assert (y[:, :8] == 14).all() and (y[:, 8:] == 0).all()
            outcomes.add("kept")
        else:  # flipped: the arm is now on the right, and a right arm
            assert red[:, 8:].all() and not red[:, :8].any()
            assert (y[:, 8:] == 15).all() and (y[:, :8] == 0).all()
            outcomes.add("flipped")
    assert outcomes == {"kept", "flipped"}


def test_flip_transform_swaps_every_pair():
    lut = LIP_INFO.flip_lut()
    label = np.array([[14, 15, 16, 17, 18, 19, 0, 255]], dtype=np.uint8)
    out = A.Compose([HorizontalFlipWithLabelSwap(lut, p=1.0)])(image=np.zeros((1, 8, 3), np.uint8), mask=label)
    np.testing.assert_array_equal(out["mask"], [[255, 0, 18, 19, 16, 17, 14, 15]])


def test_photometric_changes_colours_not_labels():
    image, label = blocks(16, 16)
    transform = build_train_transform((16, 16), scale_range=None, flip=False, photometric=True)
    plain = normalize(image, label)[0]
    changed = 0
    for seed in range(8):
        transform.set_seed(seed)
        x, y = transform(image, label)
        np.testing.assert_array_equal(y.numpy(), label)
        changed += not torch.allclose(x, plain)
    assert changed >= 4


def test_set_seed_is_deterministic():
    image, label = blocks(40, 56)
    transform = build_train_transform((24, 32))
    transform.set_seed(3)
    first = [transform(image, label) for _ in range(3)]
    transform.set_seed(3)
    again = [transform(image, label) for _ in range(3)]
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], first[1][0])  # the stream moves on
    transform.set_seed(4)
    assert not torch.equal(transform(image, label)[0], first[0][0])


def test_seeded_from_torch_manual_seed():
    image, label = blocks(40, 56)
    results = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        transform = build_train_transform((24, 32))
        results.append(torch.cat([transform(image, label)[0] for _ in range(2)]))
    assert torch.equal(results[0], results[1]) and not torch.equal(results[0], results[2])


class _Pairs(Dataset):
    def __init__(self, transform) -> None:
        self.image, self.label = blocks(40, 56)
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return self.transform(self.image, self.label)


def test_dataloader_workers_are_reproducible_and_differ():
    def run() -> torch.Tensor:
        torch.manual_seed(0)
        loader = DataLoader(_Pairs(build_train_transform((24, 32))), batch_size=2, num_workers=2)
        return torch.cat([x for x, _ in loader])

    first, second = run(), run()
    assert torch.equal(first, second)
    assert not torch.equal(first[0], first[2])  # two workers draw different augmentations


def test_eval_transform_and_normalize():
    image, label = blocks(9, 13)
    for transform in (build_eval_transform(), normalize):
        x, y = transform(image, label)
        assert x.shape == (3, 9, 13) and y.dtype == torch.int64
        expected = (image.astype(np.float32) - MEAN) / STD
        np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(y.numpy(), label)
    x, _ = build_eval_transform(mean=(0, 0, 0), std=(255, 255, 255))(image, label)
    assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("kwargs", [{"crop_size": (0, 4)}, {"crop_size": (4, 4), "scale_range": (2.0, 1.0)}])
def test_bad_arguments(kwargs):
    crop = kwargs.pop("crop_size")
    with pytest.raises(ValueError):
        build_train_transform(crop, **kwargs)
