"""Cityscapes (fine annotations), read in the layout of the official download.

::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png   (``ccnet prepare cityscapes``)
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png        (as downloaded)

``*_labelTrainIds.png`` is used when present; otherwise ``*_labelIds.png`` is mapped to the 19
train ids on the fly with the label table of ``cityscapesscripts`` (the dataset's own package).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers import labels as cs_labels

from ccnet.data.base import PairTransform, Sample, SegmentationDataset, make_label_map, pair_by_stem, require_dir
from ccnet.data.info import DatasetInfo

__all__ = ["CITYSCAPES_INFO", "Cityscapes", "cityscapes_label_map"]

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
LAYOUT = (
    f"root/leftImg8bit/{{split}}/{{city}}/*{IMAGE_SUFFIX} with labels "
    f"root/gtFine/{{split}}/{{city}}/*{TRAIN_IDS_SUFFIX} or *{LABEL_IDS_SUFFIX}"
)


def _train_id(label: cs_labels.Label) -> int:
    return 255 if label.trainId in (255, -1) else label.trainId


def cityscapes_label_map() -> np.ndarray:
    """uint8 LUT from Cityscapes label ids (0..33) to train ids (0..18, 255 = ignore).

    Built from ``cityscapesscripts.helpers.labels``; the license plate (id -1) is stored as 255 in
    8-bit files and maps to 255, like every id whose train id is 255 or -1.
    """
    return make_label_map({label.id: _train_id(label) for label in cs_labels.labels if label.id >= 0})


def _info() -> DatasetInfo:
    by_train_id = {label.trainId: label for label in cs_labels.labels if 0 <= label.trainId < 255}
    ordered = [by_train_id[i] for i in range(len(by_train_id))]
    return DatasetInfo(
        name="cityscapes",
        class_names=tuple(label.name for label in ordered),
        palette=tuple(tuple(label.color) for label in ordered),
        ignore_index=255,
    )


CITYSCAPES_INFO = _info()


class Cityscapes(SegmentationDataset):
    """Cityscapes gtFine, 19 classes. Splits ``train``, ``val``, ``test`` (any folder name under
    ``leftImg8bit`` works). A split without a ``gtFine/{split}`` folder is read unlabelled.

    Sample names are the image file stems (``frankfurt_000000_000294_leftImg8bit``).
    """

    info = CITYSCAPES_INFO

    def __init__(self, root: str | Path, split: str, transform: PairTransform | None = None) -> None:
        root = Path(root)
        image_dir = require_dir(root / "leftImg8bit" / split, LAYOUT)
        label_dir = root / "gtFine" / split
        images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")}
        labels: dict[str, Path] | None = None
        if label_dir.is_dir():
            labels = {p.name[: -len(LABEL_IDS_SUFFIX)]: p for p in label_dir.glob(f"*/*{LABEL_IDS_SUFFIX}")}
            # labelTrainIds win over labelIds for the same frame
            labels |= {p.name[: -len(TRAIN_IDS_SUFFIX)]: p for p in label_dir.glob(f"*/*{TRAIN_IDS_SUFFIX}")}
        samples = pair_by_stem(images, labels, image_dir, label_dir, LAYOUT)
        super().__init__(samples, CITYSCAPES_INFO, transform, label_map=cityscapes_label_map())
        self.root, self.split = root, split

    def label_map_for(self, sample: Sample) -> np.ndarray | None:
        """labelTrainIds files are already in train ids; labelIds files go through the LUT."""
        if sample.label is not None and sample.label.name.endswith(TRAIN_IDS_SUFFIX):
            return None
        return self.label_map
