"""Semantic segmentation metrics from a confusion matrix: IoU, mIoU, pixel and class accuracy.

Conventions follow mmsegmentation and the official Cityscapes evaluation: a class that appears in
neither the ground truth nor the prediction has an undefined (NaN) IoU and is left out of the means;
a class that is predicted but absent from the ground truth has IoU 0. Pixels whose ground truth is
the ignore index (or any label outside ``0..K-1``) are not scored; pixels with a valid ground truth
but a prediction outside ``0..K-1`` count as misses of their ground-truth class (as the Cityscapes
script counts a prediction of an ignored label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["ConfusionMatrix", "SegmentationMetrics"]


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores derived from a confusion matrix; fractions in ``[0, 1]`` (NaN where undefined).

    ``iou[k]`` is NaN for a class absent from both ground truth and prediction; ``accuracy[k]``
    (recall) is NaN for a class absent from the ground truth. NaN entries are excluded from
    ``miou`` / ``mean_accuracy``.
    """

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    iou: list[float]
    accuracy: list[float]

    def to_dict(self) -> dict[str, float | list[float | None] | None]:
        """JSON-serialisable copy with NaN replaced by ``None``."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}

    def format_table(self, class_names: Sequence[str] | None = None) -> str:
        """Per-class table (class, IoU, Acc) plus a summary line, in percent with 2 decimals."""
        names = list(class_names) if class_names is not None else [str(k) for k in range(len(self.iou))]
        if len(names) != len(self.iou):
            raise ValueError(f"got {len(names)} class names for {len(self.iou)} classes")
        width = max([len("class"), *(len(n) for n in names)])
        lines = [f"{'class':<{width}}  {'IoU':>7}  {'Acc':>7}", "-" * (width + 18)]
        rows = zip(names, self.iou, self.accuracy, strict=True)
        lines += [f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}" for name, iou, acc in rows]
        lines.append("-" * (width + 18))
        lines.append(f"mIoU {_pct(self.miou)}  aAcc {_pct(self.pixel_accuracy)}  mAcc {_pct(self.mean_accuracy)}")
        return "\n".join(lines)


class ConfusionMatrix:
    """Accumulates an int64 ``(K, K)`` confusion matrix: rows = ground truth, columns = prediction.

    ``missed`` (``(K,)``) counts pixels of each ground-truth class whose prediction lies outside
    ``0..K-1``; they are false negatives of that class and false positives of none.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Column K holds the "prediction out of range" counts; one tensor keeps all_reduce a single call.
        self._counts = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)

    @property
    def matrix(self) -> Tensor:
        """``(K, K)`` int64 counts, ``matrix[gt, pred]``."""
        return self._counts[:, : self.num_classes]

    @property
    def missed(self) -> Tensor:
        """``(K,)`` int64 counts of valid ground-truth pixels predicted outside ``0..K-1``."""
        return self._counts[:, self.num_classes]

    @property
    def device(self) -> torch.device:
        return self._counts.device

    def reset(self) -> None:
        self._counts.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Adds a batch of predicted and ground-truth label maps (same shape, any layout)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        pred = pred.reshape(-1).to(device=self.device, dtype=torch.int64)
        target = target.reshape(-1).to(device=self.device, dtype=torch.int64)
        valid = (target >= 0) & (target < k) & (target != self.ignore_index)
        pred, target = pred[valid], target[valid]
        pred = torch.where((pred >= 0) & (pred < k), pred, k)
        counts = torch.bincount(target * (k + 1) + pred, minlength=k * (k + 1))
        self._counts += counts.view(k, k + 1)

    def all_reduce(self) -> ConfusionMatrix:
        """Sums the counts over all ranks when ``torch.distributed`` is initialised; no-op otherwise."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._counts, op=dist.ReduceOp.SUM)
        return self

    def compute(self) -> SegmentationMetrics:
        counts = self._counts.detach().cpu().numpy().astype(np.float64)
        matrix = counts[:, : self.num_classes]
        tp = np.diag(matrix)
        gt = counts.sum(axis=1)  # every scored pixel of the class, misses included
        predicted = matrix.sum(axis=0)
        union = gt + predicted - tp
        iou = _safe_div(tp, union)
        accuracy = _safe_div(tp, gt)
        total = gt.sum()
        return SegmentationMetrics(
            miou=_nanmean(iou),
            pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
            mean_accuracy=_nanmean(accuracy),
            iou=iou.tolist(),
            accuracy=accuracy.tolist(),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self._counts.sum())})"
        )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full_like(num, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _nan_to_none(value):
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _pct(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100.0 * value:.2f}"
