"""LIP (Look Into Person) human parsing, 20 classes, in the layout of the official download.

::

    root/TrainVal_images/{train,val}_images/*.jpg
    root/TrainVal_parsing_annotations/{train,val}_segmentations/*.png
    root/{train,val}_id.txt                        optional (also looked for in TrainVal_images/)
    root/Testing_images/testing_images/*.jpg       split "test", no labels

or, unpacked flat, ``root/{train,val}_images`` and ``root/{train,val}_segmentations``. When an id
list is present exactly its ids are used; otherwise every image of the folder.
"""

from __future__ import annotations

from pathlib import Path

from ccnet.data.base import (
    PairTransform,
    Sample,
    SegmentationDataset,
    pair_by_stem,
    read_id_list,
    require_dir,
    require_samples,
)
from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError

__all__ = ["LIP", "LIP_INFO"]

LIP_CLASSES = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants",
    "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip

# The palette of the LIP benchmark's visualisations (JPPNet / CE2P label colours), RGB.
LIP_PALETTE = (
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85), (0, 119, 221),
    (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221), (0, 255, 255),
    (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
)  # fmt: skip

LIP_INFO = DatasetInfo(
    name="lip",
    class_names=LIP_CLASSES,
    palette=LIP_PALETTE,
    ignore_index=255,
    flip_pairs=((14, 15), (16, 17), (18, 19)),
)

LAYOUT = (
    "root/TrainVal_images/{split}_images/*.jpg and root/TrainVal_parsing_annotations/{split}_segmentations/*.png "
    "(or root/{split}_images and root/{split}_segmentations)"
)


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.is_dir()), None)


def _first_file(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


class LIP(SegmentationDataset):
    """LIP single-person parsing. Splits ``train``, ``val`` and ``test`` (images only)."""

    info = LIP_INFO

    def __init__(self, root: str | Path, split: str, transform: PairTransform | None = None) -> None:
        if split not in ("train", "val", "test"):
            raise DatasetError(f"lip: unknown split {split!r}; expected 'train', 'val' or 'test'")
        root = Path(root)
        require_dir(root, LAYOUT)
        if split == "test":
            image_dir = _first_dir([root / "Testing_images" / "testing_images", root / "testing_images"])
            label_dir = None
        else:
            image_dir = _first_dir([root / "TrainVal_images" / f"{split}_images", root / f"{split}_images"])
            label_dir = _first_dir(
                [
                    root / "TrainVal_parsing_annotations" / f"{split}_segmentations",
                    root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations" / f"{split}_segmentations",
                    root / f"{split}_segmentations",
                ]
            )
            if label_dir is None:
                raise DatasetError(f"{root}: no {split}_segmentations folder; expected {LAYOUT}")
        if image_dir is None:
            raise DatasetError(f"{root}: no {split} images folder; expected {LAYOUT}")

        id_file = _first_file(
            [
                root / f"{split}_id.txt",
                root / "TrainVal_images" / f"{split}_id.txt",
                image_dir.parent / f"{split}_id.txt",
            ]
        )
        if id_file is not None:
            samples = []
            for sample_id in read_id_list(id_file):
                image = image_dir / f"{sample_id}.jpg"
                if not image.is_file():
                    raise DatasetError(f"{image}: listed in {id_file} but not found")
                label = None if label_dir is None else label_dir / f"{sample_id}.png"
                if label is not None and not label.is_file():
                    raise DatasetError(f"{label}: label of {sample_id} (listed in {id_file}) not found")
                samples.append(Sample(image=image, label=label, name=sample_id))
            samples = require_samples(samples, id_file, LAYOUT)
        else:
            images = {p.stem: p for p in image_dir.glob("*.jpg")}
            labels = None if label_dir is None else {p.stem: p for p in label_dir.glob("*.png")}
            samples = pair_by_stem(images, labels, image_dir, label_dir, LAYOUT)
        super().__init__(samples, LIP_INFO, transform)
        self.root, self.split = root, split
