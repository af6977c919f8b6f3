"""What a model needs to know about a dataset: class names, colours, ignore label, flip pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Normalisation in 0..255 pixel units, RGB order (ImageNet statistics, as torchvision and
# mmsegmentation use).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a segmentation label set.

    ``flip_pairs`` lists label ids that swap under a horizontal flip (left/right arm, ...).
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    flip_pairs: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.class_names):
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names but {len(self.palette)} palette colours"
            )
        for a, b in self.flip_pairs:
            if not (0 <= a < self.num_classes and 0 <= b < self.num_classes):
                raise ValueError(f"{self.name}: flip pair ({a}, {b}) outside 0..{self.num_classes - 1}")

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and values (what a checkpoint stores; `from_dict` reads it back)."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
            "flip_pairs": [list(p) for p in self.flip_pairs],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DatasetInfo:
        return cls(
            values["name"],
            tuple(values["class_names"]),
            tuple(tuple(c) for c in values["palette"]),
            values["ignore_index"],
            tuple(tuple(p) for p in values["flip_pairs"]),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def flip_lut(self) -> np.ndarray:
        """uint8 lookup table (256 entries) mapping each label to its mirror label; identity
        for labels without a pair, the ignore index included."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) label ids -> (H, W, 3) uint8 colours; ignored/unknown labels become black."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return table[np.clip(labels, 0, 255).astype(np.uint8)]
