"""uint8 image and label arrays -> the tensors a model takes: the last step of every transform.

Kept apart from `ccnet.data.transforms` so that datasets and inference need neither
albumentations nor OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["normalize", "to_tensors"]


def to_tensors(
    image: np.ndarray,
    label: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H, W, 3) image and (H, W) label -> normalised float32 (3, H, W) and int64 (H, W).

    Normalisation is a per-channel 256-entry lookup written straight into the (3, H, W) layout:
    several times faster than converting, then transposing, a float tensor.
    """
    table = (np.arange(256, dtype=np.float32)[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(
        std, np.float32
    )[:, None]
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], image[..., channel], out=out[channel])
    return torch.from_numpy(out), torch.from_numpy(label.astype(np.int64))


def normalize(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The default transform of every dataset: ImageNet mean/std normalisation, no resizing."""
    return to_tensors(image, label)
