"""The long-range-context task of :mod:`ccnet.data.synthetic` as a COCO instance dataset.

Scenes are the semantic benchmark's (:class:`~ccnet.data.synthetic.SyntheticContextDataset`):
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

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ccnet.data.synthetic import SYNTHETIC_INFO, SyntheticContextDataset
from ccnet.detection.data import annotation_file
from ccnet.files import atomic_write_text

__all__ = ["CATEGORIES", "instances_of", "write_synthetic_coco"]

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


def write_synthetic_coco(root: str | Path, splits: dict[str, int], *, size: tuple[int, int] = (192, 192),
                         seed: int = 0, aligned_prob: float = 0.5, min_area: int = 16) -> dict[str, int]:
    """Write ``root/<split>/*.png`` and ``root/annotations/instances_<split>.json`` for each
    ``split: number of images``. Scenes are a pure function of ``(seed, split, index)``. Returns the
    number of instances per split."""
    root = Path(root)
    counts = {}
    for split, num_images in splits.items():
        scenes = SyntheticContextDataset(split, num_samples=num_images, size=size, seed=seed, key_label="ignore",
                                         aligned_prob=aligned_prob)
        image_dir = root / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
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
        dataset = {"info": {"description": f"ccnet synthetic long-range-context instances, seed {seed}"},
                   "images": images, "annotations": annotations, "categories": CATEGORIES}
        path = annotation_file(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(dataset))
        counts[split] = len(annotations)
    return counts
