"""Online hard example mining (OHEM) cross-entropy, as used to train the official CCNet.

Only the pixels the model finds hard (low probability of the true class) are kept, but never
fewer than ``min_kept`` of them; this follows ``OhemCrossEntropy2dTensor`` of the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ccnet.losses._utils import check_segmentation_inputs, resize_logits
from ccnet.losses.cross_entropy import cross_entropy


@torch.no_grad()
def ohem_keep_mask(
    logits: Tensor, target: Tensor, thresh: float = 0.7, min_kept: int = 100_000, ignore_index: int = 255
) -> Tensor:
    """Boolean (B, H, W) mask of the pixels that OHEM keeps; ``logits`` must match target's size.

    With ``p`` the softmax probability of each labelled pixel's true class and ``n`` the number of
    labelled pixels:

    - ``min_kept > n``: keep every labelled pixel (too few to mine);
    - ``min_kept <= 0``: keep every labelled pixel (the official code mines only when ``min_kept > 0``);
    - otherwise keep ``p <= max(thresh, k-th smallest p)`` with ``k = min_kept``: the pixels below
      ``thresh``, or the ``min_kept`` hardest ones if fewer than that are below it (ties all kept).
    """
    valid = target != ignore_index
    num_valid = int(valid.sum())
    if min_kept > num_valid or min_kept <= 0:
        return valid
    logits = logits.detach()
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    labels = target.long().masked_fill(~valid, 0)[:, None]
    # p = softmax(logits)[label] without materialising the full softmax.
    prob = (logits.gather(1, labels) - logits.logsumexp(dim=1, keepdim=True)).exp()[:, 0]
    kth_prob = torch.kthvalue(prob[valid], min(num_valid, min_kept)).values
    threshold = kth_prob.clamp_min(thresh)
    return valid & (prob <= threshold)


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    ignore_index: int = 255,
    align_corners: bool = False,
) -> Tensor:
    """Mean cross-entropy over the pixels selected by :func:`ohem_keep_mask`.

    ``logits`` (B, K, h, w) are first resized bilinearly to the size of ``target`` (B, H, W), so
    mining happens at label resolution, like the official code. 0 when no pixel is labelled.
    """
    check_segmentation_inputs(logits, target)
    logits = resize_logits(logits, (target.shape[-2], target.shape[-1]), align_corners)
    keep = ohem_keep_mask(logits, target, thresh, min_kept, ignore_index)
    return cross_entropy(logits, target.long().masked_fill(~keep, ignore_index), ignore_index)


class OhemCrossEntropyLoss(nn.Module):
    """Module form of :func:`ohem_cross_entropy`."""

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 100_000,
        ignore_index: int = 255,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = ignore_index
        self.align_corners = align_corners

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ohem_cross_entropy(
            logits, target, self.thresh, self.min_kept, self.ignore_index, self.align_corners
        )

    def extra_repr(self) -> str:
        return (
            f"thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index}, "
            f"align_corners={self.align_corners}"
        )
