"""Clips: T frames of one video read as one sample, for CCNet3D.

A :class:`Clip` is a tuple of frames (:class:`~ccnet.data.base.Sample`: an image, its label or
None for a frame without annotation, a name) and, per frame, whether this clip *scores* it.
Clips overlap (a stride below T), so an annotated frame may sit in several clips; exactly one
of them scores it (the one where it is nearest the middle, so it gets context from both sides),
which makes a per-frame evaluation count every annotated frame once, whatever the stride, the
batch size or the number of ranks.

A :class:`ClipDataset` item is ``{"image": float (3, T, H, W), "label": int64 (T, H, W),
"score": bool (T,), "name": str}``; frames without annotation carry the ignore label, so the
loss and the metrics see annotated frames only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ccnet.data.base import Sample
from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError
from ccnet.data.tensors import normalize

__all__ = [
    "Clip",
    "ClipDataset",
    "ClipPairTransform",
    "clip_windows",
    "normalize_clip",
    "numbering_gaps",
    "scoring_windows",
]

# (images uint8 (T, H, W, 3), labels uint8 (T, H, W)) -> (float (3, T, h, w), int64 (T, h, w))
ClipPairTransform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Clip:
    """T frames of one video in order; ``scored[i]``: this clip is the one that scores frame i."""

    frames: tuple[Sample, ...]
    scored: tuple[bool, ...]
    name: str

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.scored) or not self.frames:
            raise ValueError(f"clip {self.name!r}: {len(self.frames)} frames but {len(self.scored)} scored flags")


def numbering_gaps(numbers: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(before, after, missing)`` for each place where sorted frame ``numbers`` jump by more
    than their usual step (the most common difference, so a folder of every other frame has no
    gaps); ``missing``: how many frames at that step are not there."""
    pairs = list(itertools.pairwise(numbers))
    if not pairs:
        return []
    values, counts = np.unique([b - a for a, b in pairs], return_counts=True)
    usual = max(int(values[counts.argmax()]), 1)  # ties: the smallest step
    return [(a, b, -(-(b - a) // usual) - 1) for a, b in pairs if b - a > usual]


def clip_windows(length: int, clip_length: int, stride: int) -> list[list[int]]:
    """Windows of ``clip_length`` consecutive positions in ``range(length)``, starting every
    ``stride`` (1..clip_length), the last one moved back to end at the last position so every
    position is in a window. A sequence shorter than a clip gives one window, padded by
    repeating its last position."""
    if clip_length < 1 or not 1 <= stride <= clip_length:
        raise ValueError(f"need clip_length >= 1 and 1 <= stride <= clip_length, got {clip_length} and {stride}")
    if length < 1:
        return []
    if length <= clip_length:
        return [[min(i, length - 1) for i in range(clip_length)]]
    starts = list(range(0, length - clip_length + 1, stride))
    if starts[-1] != length - clip_length:
        starts.append(length - clip_length)
    return [list(range(s, s + clip_length)) for s in starts]


def scoring_windows(windows: Sequence[Sequence[int]]) -> list[list[bool]]:
    """Per window and position: whether that window scores the position's frame. Each frame is
    scored once: by the window where it is nearest the middle (ties: the earlier window; a
    frame repeated within a window: its first place)."""
    best: dict[int, tuple[float, int, int]] = {}  # frame -> (distance from the middle, window, place)
    for w, window in enumerate(windows):
        middle = (len(window) - 1) / 2
        for place, frame in enumerate(window):
            candidate = (abs(place - middle), w, place)
            if frame not in best or candidate < best[frame]:
                best[frame] = candidate
    flags = [[False] * len(window) for window in windows]
    for _, w, place in best.values():
        flags[w][place] = True
    return flags


def normalize_clip(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The default clip transform: ImageNet normalisation of every frame, no resizing."""
    pairs = [normalize(image, label) for image, label in zip(images, labels, strict=True)]
    return torch.stack([p[0] for p in pairs], dim=1), torch.stack([p[1] for p in pairs])


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 (H, W, 3) image to ``size`` (H, W)."""
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


class ClipDataset(Dataset):
    """Clips read frame by frame; a subclass finds the clips and implements :meth:`read_frame`.

    Frames without annotation are resized to the size of the clip's annotated frames (extracted
    video frames may be larger than the labelled ones); annotated frames of different sizes in
    one clip are an error naming the file. ``transform``: a clip transform
    (:class:`ccnet.data.transforms.ClipTransform`: one random draw for the whole clip), or None
    for :func:`normalize_clip`. Like every dataset's, a public attribute.
    """

    def __init__(self, clips: Sequence[Clip], info: DatasetInfo, transform: ClipPairTransform | None = None) -> None:
        self.samples: list[Clip] = list(clips)
        self.info = info
        self.transform = transform

    def read_frame(self, frame: Sample) -> tuple[np.ndarray, np.ndarray]:
        """uint8 image ``(H, W, 3)`` and label ``(H, W)`` in train ids (all ignore for a frame
        without annotation)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} clips, {self.info.num_classes} classes)"

    @property
    def has_labels(self) -> bool:
        """True when every clip has at least one annotated frame to learn from."""
        return all(any(frame.label is not None for frame in clip.frames) for clip in self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images ``(T, H, W, 3)`` and labels ``(T, H, W)`` of clip ``index``."""
        clip = self.samples[index]
        frames = [self.read_frame(frame) for frame in clip.frames]
        annotated = [(f, image) for f, (image, _) in zip(clip.frames, frames, strict=True) if f.label is not None]
        size = annotated[0][1].shape[:2] if annotated else frames[0][0].shape[:2]
        images, labels = [], []
        for frame, (image, label) in zip(clip.frames, frames, strict=True):
            if image.shape[:2] != size:
                if frame.label is not None:
                    (h, w), (ah, aw) = image.shape[:2], size
                    raise DatasetError(f"{frame.image}: size {w}x{h} differs from {aw}x{ah} of "
                                       f"{annotated[0][0].image}, in the same clip")
                image = resize_image(image, size)
                label = np.full(size, self.info.ignore_index, dtype=np.uint8)
            images.append(image)
            labels.append(label)
        return np.stack(images), np.stack(labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        images, labels = self.load(index)
        transform = normalize_clip if self.transform is None else self.transform
        image_t, label_t = transform(images, labels)
        clip = self.samples[index]
        return {"image": image_t, "label": label_t, "score": torch.tensor(clip.scored), "name": clip.name}
