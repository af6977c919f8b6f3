"""The long-range-context task of `ccnet.data.synthetic` as a COCO instance dataset.

Scenes are the semantic benchmark's (`ccnet.data.synthetic.SyntheticContextDataset`):
locally recognisable objects (stripes, checker, solid) and plain grey objects whose category
(context red / green / blue) is given only by the colour of one key marker in a corner, far from
them and mostly on other rows and columns. Each connected region of one class is one instance
(touching objects of a class merge, as a human annotator of the rendered image would see them);
the key marker is not an object. Annotations are compressed RLE, written with pycocotools.

A detector must read the key to label a grey object: its box and mask are local, its category
is not. ``ccnet prepare synthetic-coco DIR`` writes the folder; ``configs/synthetic_maskrcnn.yaml``
trains on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ccnet.data.io import DatasetError
from ccnet.data.prepare import refuse_to_replace
from ccnet.data.synthetic import LOCAL_OBJECT_MIN_SIDE, SYNTHETIC_INFO, SyntheticContextDataset, _ellipse_mask
from ccnet.detection.data import annotation_file
from ccnet.errors import InputError
from ccnet.files import atomic_write_text

__all__ = ["CATEGORIES", "DESCRIPTION", "instances_of", "min_image_side", "write_synthetic_coco"]

DESCRIPTION = "ccnet synthetic long-range-context instances"  # info.description of the files written here

CATEGORIES = [{"id": i, "name": name, "supercategory": "context" if name.startswith("context") else "local"}
              for i, name in enumerate(SYNTHETIC_INFO.class_names) if i > 0]


def instances_of(label: np.ndarray, min_area: int = 16) -> list[tuple[int, np.ndarray]]:
    """``(category id, uint8 mask)`` of every 8-connected region of each object class in a label
    map, regions smaller than ``min_area`` pixels left out."""
    instances = []
    for category in CATEGORIES:
        count, regions = cv2.connectedComponents((label == category["id"]).astype(np.uint8), connectivity=8)
        for region in range(1, count):
            mask = (regions == region).astype(np.uint8)
            if int(mask.sum()) >= min_area:
                instances.append((category["id"], mask))
    return instances


def min_image_side(min_area: int = 16) -> int:
    """The smallest image side at which the smallest object the scenes draw (an ellipse of
    ``LOCAL_OBJECT_MIN_SIDE`` of the side) still has ``min_area`` pixels: in smaller images objects
    fall under ``min_area`` and are not written as instances (at side 8, none is)."""
    side = SyntheticContextDataset.min_size
    while int(_ellipse_mask(*(max(2, round(LOCAL_OBJECT_MIN_SIDE * side)),) * 2).sum()) < min_area:
        side += 1
    return side


def _ours(path: Path) -> bool:
    """Whether an annotation file was written by `write_synthetic_coco` (so may be replaced)."""
    try:
        return json.loads(path.read_text()).get("info", {}).get("description", "").startswith(DESCRIPTION)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def _refuse_foreign_files(root: Path, splits: dict[str, SyntheticContextDataset]) -> None:
    """Before anything is written: an annotation file not written here, or images in the way
    (beside no annotation file of ours) that are not the scenes about to be written, are refused."""
    planned = []
    for split, scenes in splits.items():
        path = annotation_file(root, split)
        if path.exists():
            if not _ours(path):
                raise DatasetError(f"{path}: already exists and was not written by ccnet prepare synthetic-coco; "
                                   f"not replaced (--overwrite replaces it)")
            continue  # the split is ours: its images may be replaced
        for index, name in enumerate(scenes.samples):
            image = root / split / f"{name}.png"
            planned.append((image, lambda image=image, scenes=scenes, index=index:
                            np.array_equal(np.asarray(Image.open(image).convert("RGB")), scenes.render(index)[0])))
    refuse_to_replace(planned)


def write_synthetic_coco(root: str | Path, splits: dict[str, int], *, size: tuple[int, int] = (192, 192),
                         seed: int = 0, aligned_prob: float = 0.5, min_area: int = 16,
                         overwrite: bool = False) -> dict[str, int]:
    """Write ``root/<split>/*.png`` and ``root/annotations/instances_<split>.json`` for each
    ``split: number of images``. Scenes are a pure function of ``(seed, split, index)``. Returns the
    number of instances per split.

    Refused (``ValueError``, nothing written): images smaller than `min_image_side`, a split
    without images, and unless ``overwrite``, files in the way that this function did not write
    (an annotation file of the user's, other images under a split's name); a folder written here
    before is replaced."""
    root = Path(root)
    smallest = min_image_side(min_area)
    if min(size) < smallest:
        raise InputError(f"image size {size[0]}x{size[1]}: the synthetic COCO task needs at least {smallest} pixels "
                         f"a side (its smallest objects must keep {min_area} pixels to be instances)")
    for split, num_images in splits.items():
        if num_images < 1:
            raise InputError(f"split {split!r}: needs at least 1 image, got {num_images}")
    scenes_of = {split: SyntheticContextDataset(split, num_samples=num_images, size=size, seed=seed,
                                                key_label="ignore", aligned_prob=aligned_prob)
                 for split, num_images in splits.items()}
    if not overwrite:
        _refuse_foreign_files(root, scenes_of)
    counts = {}
    for split, num_images in splits.items():
        scenes = scenes_of[split]
        image_dir = root / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index in range(num_images):
            image, label = scenes.render(index)
            name = f"{scenes.samples[index]}.png"
            Image.fromarray(image).save(image_dir / name)
            image_id = index + 1
            images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
            for category_id, mask in instances_of(label, min_area):
                rle = mask_utils.encode(np.asfortranarray(mask))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                })
        dataset = {"info": {"description": f"{DESCRIPTION}, seed {seed}"},
                   "images": images, "annotations": annotations, "categories": CATEGORIES}
        path = annotation_file(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(dataset))
        counts[split] = len(annotations)
    return counts
