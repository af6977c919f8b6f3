"""How fast the training data pipeline delivers samples: does loading keep up with the trainer?

Two settings:

* ``cityscapes``: 1024x2048 PNG images, random scale 0.5-2.0, crop 769x769 (the official setting);
* ``ade20k``: 512x683 JPEG images (a typical ADE20K size), random scale 0.5-2.0, crop 512x512.

For each it measures samples/s of

* ``transform``: the train transform alone on an in-memory image (scale, pad, crop, flip,
  photometric distortion, normalise), in the main process;
* ``dataset``: the whole path through the real dataset class on a temporary tree in the dataset's
  on-disk layout (decode, label mapping and validation, transform, collation) via a DataLoader
  with 0 and 2 workers.

The images are smooth synthetic scenes with mild noise so that PNG/JPEG decode costs about what
real photographs cost (pure noise would make them far slower to decode).

Run: ``python benchmarks/data_loading.py [--samples 40] [--workers 0 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from ccnet.data import ADE20K, Cityscapes, SegmentationDataset, build_train_transform

SETTINGS = {
    # name: (image height, width, crop, file suffix)
    "cityscapes": (1024, 2048, (769, 769), ".png"),
    "ade20k": (512, 683, (512, 512), ".jpg"),
}


def scene(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour image with noise, and a blocky label map of 19 classes."""
    coarse = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    blocks = rng.integers(0, 19, (height // 64 + 1, width // 64 + 1), dtype=np.uint8)
    label = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


def write_tree(name: str, root: Path, count: int, rng: np.random.Generator) -> SegmentationDataset:
    """``count`` samples in the dataset's own layout; returns the dataset reading them."""
    height, width, _, _ = SETTINGS[name]
    for i in range(count):
        image, label = scene(height, width, rng)
        if name == "cityscapes":
            stem = f"aachen_{i:06d}_000019"
            image_path = root / "leftImg8bit/train/aachen" / f"{stem}_leftImg8bit.png"
            label_path = root / "gtFine/train/aachen" / f"{stem}_gtFine_labelTrainIds.png"
        else:
            stem = f"ADE_train_{i + 1:08d}"
            image_path = root / "ADEChallengeData2016/images/training" / f"{stem}.jpg"
            label_path = root / "ADEChallengeData2016/annotations/training" / f"{stem}.png"
            label = label + 1
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path, quality=90)
        Image.fromarray(label).save(label_path)
    return Cityscapes(root, "train") if name == "cityscapes" else ADE20K(root, "train")


def time_transform(name: str, samples: int, rng: np.random.Generator) -> float:
    height, width, crop, _ = SETTINGS[name]
    image, label = scene(height, width, rng)
    transform = build_train_transform(crop)
    transform.set_seed(0)
    transform(image, label)  # warm-up
    start = time.perf_counter()
    for _ in range(samples):
        transform(image, label)
    return samples / (time.perf_counter() - start)


def time_loader(dataset: SegmentationDataset, workers: int, samples: int, batch_size: int) -> float:
    """Samples/s through a DataLoader, in one epoch (random sampling with replacement), so worker
    start-up is paid once; the first batch, which pays it, is not counted."""
    batches = -(-samples // batch_size) + 1
    sampler = RandomSampler(dataset, replacement=True, num_samples=batches * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += batch["image"].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="samples timed per row (default: %(default)s)")
    parser.add_argument("--files", type=int, default=8, help="images written per temporary tree (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    threads = f"{torch.get_num_threads()} torch threads, {cv2.getNumThreads()} OpenCV threads"
    print(f"torch {torch.__version__}, {threads}, {os.cpu_count()} CPUs")
    rows = []
    for name in args.settings:
        height, width, crop, suffix = SETTINGS[name]
        setting = f"{name} {height}x{width}{suffix} -> {crop[0]}x{crop[1]}"
        rows.append((setting, "transform only", "-", time_transform(name, args.samples, rng)))
        with tempfile.TemporaryDirectory() as tmp:
            dataset = write_tree(name, Path(tmp), args.files, rng)
            dataset.transform = build_train_transform(crop)
            for workers in args.workers:
                rate = time_loader(dataset, workers, args.samples, args.batch_size)
                rows.append((setting, "read + transform", str(workers), rate))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'setting':<{width}}  {'what':<16}  {'workers':>7}  {'samples/s':>9}  {'ms/sample':>9}")
    for setting, what, workers, rate in rows:
        print(f"{setting:<{width}}  {what:<16}  {workers:>7}  {rate:>9.1f}  {1000 / rate:>9.1f}")


if __name__ == "__main__":
    main()
