"""Fixtures of the Mask R-CNN tests: a tiny COCO-format dataset written from scratch.

These tests need the ``[detection]`` extra (torchvision, pycocotools); each module skips itself
without it. ``make test`` runs them in ``.venv-detection``. Imports are local so that this file
loads in the main environment too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SIZE = 64  # image side: tiny, so a ResNet-18 Mask R-CNN step takes a fraction of a second
CATEGORIES = [{"id": 2, "name": "square"}, {"id": 7, "name": "disc"}]  # sparse ids, as in COCO
# Small model settings every training test uses (ResNet-18, narrow heads, 64 px images).
TINY_MODEL = [
    "task=detection", "detection.backbone=resnet18", "detection.norm=bn", "detection.trainable_layers=5",
    f"detection.min_size=[{SIZE}]", f"detection.max_size={SIZE}", "detection.fpn_channels=32",
    "detection.box_head_channels=64", "detection.mask_head_channels=16", "detection.box_batch_size_per_image=32",
    "detection.rpn_batch_size_per_image=32", "detection.gamma_init=1.0",
]


def _disc(cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (what crowd annotations use): run lengths of the column-major
    flattening, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def write_tiny_coco(root: Path, split: str, num_images: int, seed: int) -> dict:
    """``num_images`` scenes, each with a polygon square (category 2), a compressed-RLE disc
    (category 7) and a crowd region (uncompressed RLE, category 7); one extra image holds only a
    crowd region (kept for evaluation, skipped for training). Returns the written JSON."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []

    def add(image_id, category_id, segmentation, bbox, area, iscrowd=0):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                            "segmentation": segmentation, "bbox": bbox, "area": area, "iscrowd": iscrowd})

    for index in range(num_images + 1):
        image_id = 10 + index
        canvas = np.full((SIZE, SIZE, 3), 30, dtype=np.uint8) + rng.integers(0, 10, (SIZE, SIZE, 3), dtype=np.uint8)
        crowd = np.zeros((SIZE, SIZE), dtype=np.uint8)
        crowd[50:62, 2:20] = 1
        canvas[crowd.astype(bool)] = (120, 120, 40)
        if index < num_images:
            x, y, s = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(16, 24))
            canvas[y:y + s, x:x + s] = (230, 60, 60)
            polygon = [x, y, x + s, y, x + s, y + s, x, y + s]
            add(image_id, 2, [[float(v) for v in polygon]], [float(x), float(y), float(s), float(s)], float(s * s))
            cy, cx, r = int(rng.integers(34, 44)), int(rng.integers(36, 50)), int(rng.integers(8, 12))
            disc = _disc(cy, cx, r)
            canvas[disc.astype(bool)] = (60, 200, 230)
            rle = mask_utils.encode(np.asfortranarray(disc))
            add(image_id, 7, {"size": [SIZE, SIZE], "counts": rle["counts"].decode("ascii")},
                [float(v) for v in mask_utils.toBbox(rle)], float(mask_utils.area(rle)))
        add(image_id, 7, _uncompressed_rle(crowd), [2.0, 50.0, 18.0, 12.0], float(crowd.sum()), iscrowd=1)
        name = f"{split}_{index:03d}.png"
        Image.fromarray(canvas).save(root / split / name)
        images.append({"id": image_id, "file_name": name, "height": SIZE, "width": SIZE})
    dataset = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
    return dataset


def pytest_configure(config):
    # pycocotools 2.0.x decodes masks through a numpy-1 array protocol that numpy 2 warns about.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Path:
    """A COCO-layout folder: ``train`` (6 scenes + 1 crowd-only image) and ``val`` (3 + 1)."""
    root = tmp_path_factory.mktemp("tiny_coco")
    write_tiny_coco(root, "train", 6, seed=0)
    write_tiny_coco(root, "val", 3, seed=1)
    return root
