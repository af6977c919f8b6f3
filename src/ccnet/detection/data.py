"""COCO instance annotations through pycocotools: ``instances_*.json`` + an image folder.

Masks come from ``COCO.annToMask`` (polygons, uncompressed and compressed RLE, as the COCO API
decodes them). Crowd regions (``iscrowd: 1``) are left out of the training targets, as
torchvision's and Detectron2's COCO loaders do; ``COCOeval`` reads them from the same file and
ignores detections that fall on them. Category ids (sparse in COCO: 1..90) map to contiguous
labels 1..K in file order of ``categories`` sorted by id; label 0 is torchvision's background.
The whole file is checked when it is opened (`ccnet.detection.validate`).

The training augmentation is the Detectron one: a horizontal flip (here), and the resize to the
shorter side ``min_size`` (one of several, for multi-scale training) capped at ``max_size``,
done by torchvision's ``MaskRCNN`` itself, which also normalises the image.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError, read_image
from ccnet.detection.validate import CocoCheck, check_instances, warn_dropped

__all__ = ["CocoInstances", "annotation_file", "collate", "load_coco", "train_transform"]

Target = dict[str, torch.Tensor]


def annotation_file(root: str | Path, split: str) -> Path:
    """``root/annotations/instances_<split>.json``: the COCO layout."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def load_coco(path: str | Path) -> tuple[COCO, CocoCheck]:
    """A ``pycocotools.coco.COCO`` index of an instances file, every entry checked first
    (`ccnet.detection.validate.check_instances`: one-line errors naming the file, the entry
    and the field), and what to leave out of the training targets."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        dataset = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a valid JSON file ({error})") from None
    if not isinstance(dataset, dict):
        raise DatasetError(f"{path}: expected a COCO instances object at the top level")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DatasetError(f"{path}: no {key!r} list; not a COCO instances file")
    check = check_instances(path, dataset)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco, check


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct, saturated colours (golden-ratio hues) for drawing classes."""
    import colorsys

    return tuple(tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95))
                 for i in range(n))  # type: ignore[misc]


def train_transform(flip: bool = True) -> Callable[[Any, Target], tuple[Any, Target]]:
    """The training augmentation on (image, target) with torchvision's v2 transforms: horizontal
    flip with probability 0.5 (boxes and masks follow). Draws from torch's RNG, which
    `ccnet.engine.sampling.SeededDataset` seeds per sample (exact resume)."""
    return v2.Compose([v2.RandomHorizontalFlip(0.5)] if flip else [v2.Identity()])


class CocoInstances(Dataset):
    """Images and instance targets of a COCO-format split.

    ``dataset[i]`` is ``{"image": float (3, H, W) in 0..1, "target": {"boxes": (N, 4) xyxy,
    "labels": (N,), "masks": uint8 (N, H, W)}, "image_id": int, "name": str}`` with crowd regions
    and what the file check leaves out (`ccnet.detection.validate`: empty boxes, boxes or
    polygons outside the image, invalid polygons; one warning with the counts). ``train=True``
    also skips images without any object (Detectron's filter). ``max_images`` keeps the first
    images (by id). ``transform`` takes and returns ``(tv_tensors.Image, target)`` with
    ``boxes``/``masks`` as tv_tensors.
    """

    def __init__(self, image_dir: str | Path, annotations: str | Path, *, train: bool = False,
                 transform: Callable[[Any, Target], tuple[Any, Target]] | None = None,
                 max_images: int | None = None, name: str | None = None) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_path = Path(annotations)
        self.coco, self.check = load_coco(self.annotation_path)
        warn_dropped(self.annotation_path, self.check, evaluation=not train)
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.image_dir}: image folder not found")
        categories = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        if not categories:
            raise DatasetError(f"{self.annotation_path}: no categories")
        self.category_ids: tuple[int, ...] = tuple(int(c["id"]) for c in categories)
        self.label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        self.info = DatasetInfo(name or self.annotation_path.stem.removeprefix("instances_"),
                                tuple(str(c["name"]) for c in categories), _palette(len(categories)),
                                ignore_index=0)
        ids = sorted(self.coco.imgs)
        if train:
            ids = [i for i in ids if any(self._is_object(a) for a in self.coco.imgToAnns.get(i, []))]
        if max_images is not None:
            ids = ids[:max_images]
        self.image_ids: list[int] = ids
        self.transform = transform

    @classmethod
    def from_root(cls, root: str | Path, split: str, **kwargs: Any) -> CocoInstances:
        """The split ``split`` of a COCO-layout folder: ``annotations/instances_<split>.json`` and
        ``<split>/`` images (``train2017``, ``val2017``, ...)."""
        return cls(Path(root) / split, annotation_file(root, split), name=kwargs.pop("name", split), **kwargs)

    def _is_object(self, ann: dict[str, Any]) -> bool:
        """A training target: not a crowd region, not left out by the file check."""
        return not ann.get("iscrowd", 0) and ann["id"] not in self.check.dropped

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, index: int) -> dict[str, Any]:
        return self.coco.imgs[self.image_ids[index]]

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        """``(image uint8 (H, W, 3) RGB, target)`` of image ``index``, before any transform."""
        info = self.image_info(index)
        path = self.image_dir / info["file_name"]
        image = read_image(path)
        if image.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but {self.annotation_path} "
                               f"says {info['width']}x{info['height']}")
        return image, self._target(info, image.shape[:2])

    def _target(self, info: dict[str, Any], size: tuple[int, int]) -> Target:
        height, width = size
        boxes, labels, masks = [], [], []
        for ann in self.coco.imgToAnns.get(info["id"], []):
            if not self._is_object(ann):
                continue
            x, y, w, h = ann["bbox"]  # inside the image: the file check left the others out
            box = [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]
            if ann["id"] in self.check.polygons:  # invalid polygons removed
                ann = {**ann, "segmentation": self.check.polygons[ann["id"]]}
            try:
                mask = self.coco.annToMask(ann)
            except Exception as error:  # malformed polygon or RLE: name the annotation
                raise DatasetError(f"{self.annotation_path}: annotation {ann['id']} (image {info['file_name']}): "
                                   f"cannot decode its segmentation ({type(error).__name__}: {error})") from None
            boxes.append(box)
            labels.append(self.label_of[ann["category_id"]])
            masks.append(mask)
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_np, target = self.load(index)
        image: Any = tv_tensors.Image(torch.from_numpy(image_np).permute(2, 0, 1))
        if self.transform is not None:
            size = tuple(image.shape[-2:])
            target = {**target, "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size),
                      "masks": tv_tensors.Mask(target["masks"])}
            image, target = self.transform(image, target)
        target = {k: v.as_subclass(torch.Tensor) for k, v in target.items()}
        info = self.image_info(index)
        return {"image": image.as_subclass(torch.Tensor).float().div_(255), "target": target,
                "image_id": int(info["id"]), "name": Path(info["file_name"]).stem}


def collate(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batches stay lists: Mask R-CNN takes images of different sizes."""
    return list(samples)
