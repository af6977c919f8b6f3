"""Pixel-wise cross-entropy over the labelled pixels of a segmentation map."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.losses._utils import check_segmentation_inputs, resize_logits


def cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int = 255, align_corners: bool = False
) -> Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``.

    Args:
        logits: (B, K, h, w) class scores; resized bilinearly to the target's (H, W) when they
            differ, so feature-resolution logits (e.g. an auxiliary head) can be used directly.
        target: (B, H, W) integer labels.
        ignore_index: label of pixels that take no part in the loss.
        align_corners: passed to the bilinear resize.

    Returns:
        A scalar. When every pixel is ignored it is 0 (not NaN) and still part of the graph, with
        zero gradient, so a batch of unlabelled crops does not poison training.
    """
    check_segmentation_inputs(logits, target)
    logits = resize_logits(logits, (target.shape[-2], target.shape[-1]), align_corners)
    target = target.long()
    # sum / count instead of reduction="mean", which gives 0/0 = NaN when nothing is labelled.
    loss_sum = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    num_valid = (target != ignore_index).sum()
    return loss_sum / num_valid.clamp_min(1)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy`."""

    def __init__(self, ignore_index: int = 255, align_corners: bool = False) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.align_corners = align_corners

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(logits, target, self.ignore_index, self.align_corners)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, align_corners={self.align_corners}"
