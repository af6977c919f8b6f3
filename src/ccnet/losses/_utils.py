"""Shape checks and resizing shared by the segmentation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_segmentation_inputs(input: Tensor, target: Tensor, *, name: str = "logits") -> None:
    """Check ``input`` is (B, C, H, W), ``target`` is integer (B, H', W') with the same B.

    Raises ``ValueError`` (naming both shapes) on a bad shape, ``TypeError`` on a non-integer target.
    """
    if input.ndim != 4 or target.ndim != 3 or input.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected {name} of shape (B, C, H, W) and target of shape (B, H, W) with the same B; "
            f"got {name} {tuple(input.shape)} and target {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")


def resize_logits(logits: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinearly resize ``logits`` to ``size`` (a no-op when it already has that size)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
