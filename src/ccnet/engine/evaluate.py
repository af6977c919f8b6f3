"""Scoring: a model over a dataset (optionally distributed), or saved prediction PNGs against labels.

Distributed evaluation gives each rank a disjoint shard with `ShardSampler` rather than
``DistributedSampler``, which pads the dataset with duplicates to equal shard sizes and so counts
some images twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ccnet.data.io import read_label
from ccnet.engine.inference import infer, resize
from ccnet.engine.metrics import ConfusionMatrix
from ccnet.errors import DatasetError, InputError, UserFileNotFoundError

__all__ = ["ShardSampler", "evaluate", "evaluate_predictions"]


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...``: disjoint shards that together cover the dataset
    exactly once (no padding, no shuffling). ``rank``/``world_size`` default to the process group's."""

    def __init__(self, dataset: Sized, rank: int | None = None, world_size: int | None = None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        self.world_size = world_size if world_size is not None else (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}")
        self.length = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


def evaluate(
    model: nn.Module,
    dataset_or_loader: Dataset | DataLoader,
    *,
    num_classes: int,
    ignore_index: int = 255,
    device: torch.device | str = "cpu",
    infer_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    batch_size: int = 1,
    num_workers: int = 0,
) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over a dataset, summed over all ranks.

    A dataset (items ``{"image", "label", ...}``) is loaded with ``batch_size`` (1 by default:
    evaluation images may differ in size) and, under ``torch.distributed``, sharded with
    `ShardSampler`; a ready ``DataLoader`` is used as given (shard it the same way).
    The model must already be on ``device``; a ``DistributedDataParallel`` wrapper is bypassed, since
    ranks run different numbers of forwards. ``infer_kwargs`` go to `infer` (``flip_lut``
    defaults to the dataset's ``info.flip_lut()`` when flipping). Predictions are resized to the
    label size if the two differ.

    Clips (items with ``"image"`` ``(3, T, H, W)``, ``"label"`` ``(T, H, W)`` and ``"score"``
    ``(T,)``, for a video model): every frame the clip scores is counted, per frame; since each
    annotated frame is scored by exactly one clip (`ccnet.data.clips`), each counts once.
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    if isinstance(dataset_or_loader, DataLoader):
        loader, dataset = dataset_or_loader, dataset_or_loader.dataset
    else:
        dataset = dataset_or_loader
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=ShardSampler(dataset), num_workers=num_workers, shuffle=False
        )
    kwargs = dict(infer_kwargs or {})
    info = getattr(dataset, "info", None)
    if kwargs.get("flip") and kwargs.get("flip_lut") is None and info is not None:
        kwargs["flip_lut"] = info.flip_lut()

    confusion = ConfusionMatrix(num_classes, ignore_index, device=device)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    for batch in tqdm(loader, desc="evaluate", disable=not progress or rank != 0, dynamic_ncols=True):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        probs = infer(model, images, num_classes=num_classes, **kwargs)
        if probs.shape[-2:] != labels.shape[-2:]:
            probs = resize(probs, labels.shape[-2:], kwargs.get("align_corners", False))
        preds = probs.argmax(dim=1)
        if "score" in batch:  # clips: the frames this clip scores, (N, H, W)
            scored = batch["score"].to(device)
            preds, labels = preds[scored], labels[scored]
        confusion.update(preds, labels)
    return confusion.all_reduce()


def evaluate_predictions(pred_dir: str | Path, dataset: Any, *, progress: bool = True) -> ConfusionMatrix:
    """Scores ``pred_dir/<name>.png`` (uint8 train ids, as ``ccnet predict`` writes) against the
    ground truth of every sample of ``dataset`` (``samples``, ``load(i)`` and ``info`` as the ccnet
    datasets provide; labels in train ids)."""
    pred_dir = Path(pred_dir)
    info = dataset.info
    confusion = ConfusionMatrix(info.num_classes, info.ignore_index)
    for i, sample in enumerate(tqdm(dataset.samples, desc="evaluate", disable=not progress, dynamic_ncols=True)):
        path = pred_dir / f"{sample.name}.png"
        if not path.is_file():
            raise UserFileNotFoundError(f"no prediction {path} for sample {sample.name!r}")
        if sample.label is None:
            raise DatasetError(f"sample {sample.name!r} ({sample.image}) has no ground-truth label to score against")
        label = np.asarray(dataset.load(i)[1])
        pred = read_label(path)  # grey or palette PNG of class indices; errors name the file
        if pred.shape != label.shape:
            (h, w), (lh, lw) = pred.shape, label.shape
            raise InputError(f"{path}: prediction size {w}x{h} differs from label size {lw}x{lh} ({sample.label})")
        confusion.update(torch.from_numpy(pred), torch.from_numpy(label))
    return confusion
