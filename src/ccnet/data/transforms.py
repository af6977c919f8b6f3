"""Training and evaluation transforms: ``(image uint8 HxWx3, label uint8 HxW) -> (float (3,h,w), long (h,w))``.

Augmentation is done with albumentations; the only code of our own is a horizontal flip that also
swaps left/right labels, and the final normalise-to-tensor step.

Seeding. albumentations draws from its own generators, not from ``torch``/``numpy``/``random``
global state, so `SegmentationTransform` manages them:

* by default it (re)seeds itself from ``torch.initial_seed()`` whenever that changes. In a
  DataLoader worker ``torch.initial_seed()`` is ``base_seed + worker_id``, where ``base_seed`` is
  drawn from the main process's torch RNG (or the DataLoader's ``generator``) when the epoch's
  iterator is created; so ``torch.manual_seed(s)`` in the main process makes every epoch's
  augmentation reproducible for a given ``num_workers`` and batch size, with no ``worker_init_fn``.
* ``transform.set_seed(n)`` restarts it from an explicit seed (and turns the automatic seeding
  off). Called before each sample with a seed derived from (run seed, epoch, position), as the
  trainer's sampler does, the augmentation of a sample depends on nothing else: identical for
  any ``num_workers`` and exactly resumable mid-epoch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD
from ccnet.data.tensors import normalize, to_tensors

# albumentations asks PyPI for a newer version at import time unless told not to; an offline
# training node would stall on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A

__all__ = [
    "ClipTransform",
    "HorizontalFlipWithLabelSwap",
    "SegmentationTransform",
    "build_eval_transform",
    "build_train_transform",
    "normalize",
    "photometric_distortion",
    "to_tensors",
]


class HorizontalFlipWithLabelSwap(A.HorizontalFlip):
    """Horizontal flip that also maps the label through ``flip_lut`` (left arm <-> right arm, ...).

    One transform, so the mirror and the label swap can never happen apart.
    """

    def __init__(self, flip_lut: np.ndarray | None = None, p: float = 0.5) -> None:
        super().__init__(p=p)
        if flip_lut is not None:
            flip_lut = np.asarray(flip_lut, dtype=np.uint8)
            if flip_lut.shape != (256,):
                raise ValueError(f"flip_lut must have 256 entries, got shape {flip_lut.shape}")
            if np.array_equal(flip_lut, np.arange(256)):
                flip_lut = None
        self.flip_lut = flip_lut

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        flipped = super().apply_to_mask(mask, **params)
        return flipped if self.flip_lut is None else self.flip_lut[flipped]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("flip_lut",)


def photometric_distortion() -> A.BaseCompose:
    """mmsegmentation's ``PhotoMetricDistortion`` with albumentations ops.

    Brightness +-32 (p=0.5), then contrast x[0.5, 1.5] (p=0.5) either first or last (chosen at
    random), saturation x[0.5, 1.5] (p=0.5) and hue +-18 in OpenCV's 0..180 units (p=0.5). The
    saturation step blends with the grey image (torchvision semantics) where mmsegmentation scales
    the HSV S channel: the same range of effect, not bit-identical.
    """

    def contrast() -> A.BasicTransform:
        return A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(-0.5, 0.5), p=0.5)

    def saturation_hue() -> list[A.BasicTransform]:
        return [
            A.ColorJitter(brightness=(1.0, 1.0), contrast=(1.0, 1.0), saturation=(0.5, 1.5), hue=(0.0, 0.0), p=0.5),
            A.HueSaturationValue(hue_shift_limit=(-18, 18), sat_shift_limit=(0, 0), val_shift_limit=(0, 0), p=0.5),
        ]

    return A.Sequential(
        [
            A.RandomBrightnessContrast(brightness_limit=(-32 / 255, 32 / 255), contrast_limit=(0.0, 0.0), p=0.5),
            A.OneOf(
                [
                    A.Sequential([contrast(), *saturation_hue()], p=1.0),
                    A.Sequential([*saturation_hue(), contrast()], p=1.0),
                ],
                p=1.0,
            ),
        ],
        p=1.0,
    )


class SegmentationTransform:
    """An albumentations pipeline (or none) followed by normalisation to tensors; seedable.

    See the module docstring for how seeding works.
    """

    def __init__(
        self,
        augment: A.Compose | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.augment = augment
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._seeded_from: int | None = None  # the torch.initial_seed() the generators came from
        self._fixed_seed = False

    def set_seed(self, seed: int) -> None:
        """Restart the augmentation random stream from ``seed``; automatic seeding stops."""
        self._fixed_seed = True
        self._reseed(seed)

    def _reseed(self, seed: int) -> None:
        if self.augment is not None:
            # One generator pair shared by every transform, so their draws are independent of each
            # other (Compose(seed=...) would give each transform its own copy of the same stream).
            self.augment.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def _follow_torch_seed(self) -> None:
        if not self._fixed_seed:
            seed = torch.initial_seed()
            if seed != self._seeded_from:
                self._seeded_from = seed
                self._reseed(seed)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is not None:
            self._follow_torch_seed()
            out = self.augment(image=image, mask=label)
            image, label = out["image"], out["mask"]
        return to_tensors(image, label, self.mean, self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(augment={self.augment!r}, mean={self.mean}, std={self.std})"


class ClipTransform(SegmentationTransform):
    """`SegmentationTransform` for clips: ``(images (T, H, W, 3), labels (T, H, W))`` ->
    ``(float (3, T, h, w), int64 (T, h, w))``.

    One random draw (scale, crop position, flip, photometric parameters) applies to every frame
    (albumentations' ``images``/``masks`` targets), so the frames stay aligned as the video
    was; seeding as for single images (``set_seed`` per sample keeps resume exact).
    """

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or labels.ndim != 3 or images.shape[:3] != labels.shape:
            raise ValueError(f"expected a clip of images (T, H, W, 3) and labels (T, H, W), got {images.shape} "
                             f"and {labels.shape}")
        if self.augment is not None:
            self._follow_torch_seed()
            out = self.augment(images=images, masks=labels)
            images, labels = np.asarray(out["images"]), np.asarray(out["masks"])
        frames = [to_tensors(image, label, self.mean, self.std) for image, label in zip(images, labels, strict=True)]
        return torch.stack([f[0] for f in frames], dim=1), torch.stack([f[1] for f in frames])


def build_train_transform(
    crop_size: tuple[int, int],
    *,
    scale_range: tuple[float, float] | None = (0.5, 2.0),
    flip: bool = True,
    flip_lut: np.ndarray | None = None,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
    clips: bool = False,
) -> SegmentationTransform:
    """The training augmentation of CCNet / mmsegmentation.

    Random scale in ``scale_range`` (image bilinear, label nearest; None: no scaling), pad to at
    least ``crop_size`` (H, W) at the bottom/right, random crop to ``crop_size``, horizontal flip
    with p=0.5 remapping labels through ``flip_lut`` (``DatasetInfo.flip_lut()``), photometric
    distortion, normalisation with ``mean``/``std`` (0..255 units, RGB).

    Padding: the label gets ``ignore_index``; the image gets the mean colour, i.e. 0 after
    normalisation, as the official CCNet code (pads its mean-subtracted image with 0) and
    mmsegmentation (pads the normalised image with 0) do.

    ``clips=True``: a `ClipTransform` (one draw for all frames of a clip).
    """
    height, width = int(crop_size[0]), int(crop_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    steps: list[A.BasicTransform | A.BaseCompose] = []
    if scale_range is not None:
        low, high = float(scale_range[0]), float(scale_range[1])
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            )
        )
    pad_colour = tuple(float(round(m)) for m in mean)
    steps += [
        A.PadIfNeeded(
            min_height=height,
            min_width=width,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=pad_colour,
            fill_mask=ignore_index,
        ),
        A.RandomCrop(height=height, width=width),
    ]
    if flip:
        steps.append(HorizontalFlipWithLabelSwap(flip_lut, p=0.5))
    if photometric:
        steps.append(photometric_distortion())
    return (ClipTransform if clips else SegmentationTransform)(A.Compose(steps), mean=mean, std=std)


def build_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    clips: bool = False,
) -> SegmentationTransform:
    """Evaluation transform: normalisation only; images keep their size (the evaluator handles
    sliding windows and multi-scale testing). ``clips=True``: for clips."""
    return (ClipTransform if clips else SegmentationTransform)(None, mean=mean, std=std)
