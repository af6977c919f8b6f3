"""Datasets of the paper, users' own folders, a synthetic long-range-context dataset, transforms.

Importing `ccnet.data` loads nothing heavy: each dataset module, and the augmentation stack
(albumentations, OpenCV) of `ccnet.data.transforms`, is imported when first used, so that
models, export and benchmarks work with PyTorch alone.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ccnet.errors import ConfigError

if TYPE_CHECKING:
    from ccnet.data.base import PairTransform, SegmentationDataset

# Dataset name (as used in configs and on the command line) -> "module:class".
DATASETS: dict[str, str] = {
    "cityscapes": "ccnet.data.cityscapes:Cityscapes",
    "ade20k": "ccnet.data.ade20k:ADE20K",
    "lip": "ccnet.data.lip:LIP",
    "camvid": "ccnet.data.camvid:CamVid",
    "voc": "ccnet.data.voc:PascalVOC",
    "folder": "ccnet.data.folder:FolderDataset",
}

# Public names of the submodules, imported on first access (PEP 562).
_LAZY = {
    **{target.split(":")[1]: target.split(":")[0] for target in DATASETS.values()},
    "PairTransform": "ccnet.data.base",
    "Sample": "ccnet.data.base",
    "SegmentationDataset": "ccnet.data.base",
    "DatasetError": "ccnet.data.io",
    "read_image": "ccnet.data.io",
    "read_label": "ccnet.data.io",
    "normalize": "ccnet.data.tensors",
    "SegmentationTransform": "ccnet.data.transforms",
    "build_eval_transform": "ccnet.data.transforms",
    "build_train_transform": "ccnet.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ccnet.data' has no attribute {name!r}")


def dataset_class(name: str) -> type[SegmentationDataset]:
    """The class of dataset ``name`` (a key of `DATASETS`)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: PairTransform | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """Instantiate dataset ``name`` as ``cls(root, split, transform, **kwargs)``."""
    return dataset_class(name)(root, split, transform, **kwargs)


__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetInfo",
    "build_dataset",
    "dataset_class",
    *sorted(_LAZY),
]
