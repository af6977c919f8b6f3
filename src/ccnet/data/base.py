"""The dataset base class: a sorted list of (image, label) files, validated on every read.

Subclasses only find their files (each in its dataset's published layout) and describe their
label set; reading, label mapping, validation and transforms live here, once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError, read_image, read_label
from ccnet.data.tensors import normalize

__all__ = [
    "PairTransform",
    "Sample",
    "SegmentationDataset",
    "make_label_map",
    "pair_by_stem",
    "require_dir",
    "require_samples",
]

# (image uint8 HxWx3, label uint8 HxW) -> (image float (3, h, w), label long (h, w))
PairTransform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Sample:
    """One image, its label map (None for unlabelled test images) and its name (the image's stem,
    used as the file name of its prediction)."""

    image: Path
    label: Path | None
    name: str


def make_label_map(mapping: dict[int, int] | Iterable[tuple[int, int]], ignore_index: int = 255) -> np.ndarray:
    """uint8 LUT of 256 entries from raw label values to train ids.

    Raw values not in ``mapping`` map to themselves, so an unexpected value still fails validation
    (it lands outside the class range) instead of being silently ignored; ``ignore_index`` always
    maps to itself unless the mapping says otherwise.
    """
    lut = np.arange(256, dtype=np.uint8)
    lut[ignore_index] = ignore_index
    for raw, train_id in dict(mapping).items():
        if not (0 <= raw <= 255 and 0 <= train_id <= 255):
            raise ValueError(f"label map entry {raw} -> {train_id} outside 0..255")
        lut[raw] = train_id
    return lut


class SegmentationDataset(Dataset):
    """A list of `Sample` read as ``dict(image=(3, H, W) float, label=(H, W) long, name=str)``.

    Args:
        samples: the files, in the order they are indexed (subclasses sort them by name).
        info: class names, palette, ignore index and flip pairs of the label set.
        transform: ``(image, label) -> (image tensor, label tensor)``; None applies
            `ccnet.data.tensors.normalize` (ImageNet mean/std, no resizing). A public
            attribute: assign ``dataset.transform = ...`` after construction to change it.
        label_map: optional uint8 LUT (256 entries) from raw label values to train ids / ignore.

    Augmentation randomness belongs to the transform: seed it per sample with its ``set_seed``
    (see `ccnet.data.transforms`) for results independent of loader workers.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        info: DatasetInfo,
        transform: PairTransform | None = None,
        label_map: np.ndarray | None = None,
    ) -> None:
        if label_map is not None:
            label_map = np.asarray(label_map)
            if label_map.shape != (256,) or label_map.dtype != np.uint8:
                raise ValueError(
                    f"label_map must be a uint8 array of 256 entries, got {label_map.dtype} {label_map.shape}"
                )
        self.samples: list[Sample] = list(samples)
        self.info = info
        self.transform = transform
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {self.info.num_classes} classes)"

    @property
    def has_labels(self) -> bool:
        """True when every sample has a label map (a test split may have none)."""
        return all(sample.label is not None for sample in self.samples)

    def label_map_for(self, sample: Sample) -> np.ndarray | None:
        """The LUT applied to ``sample``'s raw label; a subclass whose files differ in encoding
        (Cityscapes labelIds vs labelTrainIds) overrides this."""
        return self.label_map

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read sample ``index``: uint8 image (H, W, 3) and uint8 label (H, W) in train ids,
        checked for size and value range; an all-ignore label if the sample has none."""
        sample = self.samples[index]
        image = read_image(sample.image)
        if sample.label is None:
            return image, np.full(image.shape[:2], self.info.ignore_index, dtype=np.uint8)
        raw = read_label(sample.label)
        if raw.shape != image.shape[:2]:
            (h, w), (ih, iw) = raw.shape, image.shape[:2]
            raise DatasetError(f"{sample.label}: label size {w}x{h} differs from image size {iw}x{ih} ({sample.image})")
        lut = self.label_map_for(sample)
        self._check_values(sample.label, raw, lut)
        return image, (raw if lut is None else lut[raw])

    def _check_values(self, path: Path, raw: np.ndarray, lut: np.ndarray | None) -> None:
        """Raise if any raw value maps outside ``0..num_classes-1`` and is not the ignore index.

        Works on the 256-bin histogram of raw values, so it costs one pass over the label.
        """
        present = np.flatnonzero(np.bincount(raw.reshape(-1), minlength=256))
        mapped = present if lut is None else lut[present].astype(np.int64)
        bad = (mapped >= self.info.num_classes) & (mapped != self.info.ignore_index)
        if bad.any():
            raw_bad = present[bad].tolist()
            detail = f"label values {raw_bad}"
            if lut is not None and mapped[bad].tolist() != raw_bad:
                detail += f" (mapped to {mapped[bad].tolist()})"
            raise DatasetError(
                f"{path}: {detail} outside the {self.info.num_classes} classes of {self.info.name} "
                f"(0..{self.info.num_classes - 1}, ignore {self.info.ignore_index})"
            )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        image, label = self.load(index)
        transform = normalize if self.transform is None else self.transform
        image_t, label_t = transform(image, label)
        return {"image": image_t, "label": label_t, "name": self.samples[index].name}


# ----------------------------------------------------------------------------- file discovery helpers


def require_dir(path: Path, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise a DatasetError naming it and the layout expected."""
    if not path.is_dir():
        raise DatasetError(f"{path}: directory not found; expected {layout}")
    return path


def require_samples(samples: list[Sample], where: Path, layout: str) -> list[Sample]:
    """Sort samples by name; raise if there are none or if two share a name."""
    if not samples:
        raise DatasetError(f"{where}: no images found; expected {layout}")
    samples = sorted(samples, key=lambda s: s.name)
    for first, second in itertools.pairwise(samples):
        if first.name == second.name:
            raise DatasetError(f"{second.image}: name {second.name!r} also used by {first.image}")
    return samples


def pair_by_stem(
    images: dict[str, Path],
    labels: dict[str, Path] | None,
    image_dir: Path,
    label_dir: Path | None,
    layout: str,
) -> list[Sample]:
    """Pair images and labels that share a key; any unpaired file is an error naming it.

    ``labels=None`` means the split has no labels at all (a test split): every sample gets None.
    """
    if labels is not None:
        for key in sorted(images):
            if key not in labels:
                raise DatasetError(f"{images[key]}: no label for this image in {label_dir}; expected {layout}")
        for key in sorted(labels):
            if key not in images:
                raise DatasetError(f"{labels[key]}: no image for this label in {image_dir}; expected {layout}")
    samples = [
        Sample(image=path, label=None if labels is None else labels[key], name=path.stem)
        for key, path in images.items()
    ]
    return require_samples(samples, image_dir, layout)


def read_id_list(path: Path) -> list[str]:
    """Ids from a split list file (one per line; blank lines skipped; only the first column kept,
    as some lists carry ``image label`` pairs)."""
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(Path(line.split()[0]).stem)
    return ids
