"""Datasets of the paper, users' own folders, a synthetic long-range-context dataset, transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ccnet.data.ade20k import ADE20K
from ccnet.data.base import PairTransform, Sample, SegmentationDataset
from ccnet.data.camvid import CamVid
from ccnet.data.cityscapes import Cityscapes
from ccnet.data.folder import FolderDataset
from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ccnet.data.io import DatasetError, read_image, read_label
from ccnet.data.lip import LIP
from ccnet.data.transforms import SegmentationTransform, build_eval_transform, build_train_transform, normalize
from ccnet.data.voc import PascalVOC

# Dataset name (as used in configs and on the command line) -> class.
DATASETS: dict[str, type[SegmentationDataset]] = {
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "lip": LIP,
    "camvid": CamVid,
    "voc": PascalVOC,
    "folder": FolderDataset,
}


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: PairTransform | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """Instantiate ``DATASETS[name](root, split, transform, **kwargs)``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name](root, split, transform, **kwargs)


__all__ = [
    "ADE20K",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LIP",
    "CamVid",
    "Cityscapes",
    "DatasetError",
    "DatasetInfo",
    "FolderDataset",
    "PairTransform",
    "PascalVOC",
    "Sample",
    "SegmentationDataset",
    "SegmentationTransform",
    "build_dataset",
    "build_eval_transform",
    "build_train_transform",
    "normalize",
    "read_image",
    "read_label",
]
