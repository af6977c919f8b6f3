"""Test-time inference: whole-image or sliding-window forward passes, multi-scale and flip averaging.

`infer` returns class probabilities at the input resolution, the softmax averaged over every
(scale, flip) pass. Sliding-window tiling follows mmsegmentation: a regular grid of ``crop_size``
tiles every ``stride`` pixels, the last tile of each row/column aligned to the image border, and
overlapping tile logits averaged.

Clips ``(B, 3, T, H, W)`` for `ccnet.models.CCNet3D` go through the same paths: every
resize, flip and tile applies to all frames alike, and probabilities come back per frame,
``(B, K, T, H, W)``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.models.ccnet3d import clips_to_frames, frames_to_clips

__all__ = ["infer", "resize", "slide_logits", "slide_windows", "whole_logits"]

# Default sliding-window stride as a fraction of the crop, as in the original CCNet evaluation.
DEFAULT_STRIDE_RATE = 2.0 / 3.0

IntPair = int | Sequence[int]
FlipLut = Sequence[int] | np.ndarray | Tensor


def infer(
    model: nn.Module,
    images: Tensor,
    *,
    num_classes: int,
    mode: str = "whole",
    crop_size: IntPair | None = None,
    stride: IntPair | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    flip_lut: FlipLut | None = None,
    align_corners: bool = False,
) -> Tensor:
    """Class probabilities ``(B, K, H, W)`` for normalised images ``(B, 3, H, W)``, or
    ``(B, K, T, H, W)`` for clips ``(B, 3, T, H, W)`` (a video model).

    Args:
        model: returns ``{"out": logits}`` (or a logits tensor); run in eval mode under
            ``torch.no_grad()``, its previous mode restored afterwards.
        mode: ``"whole"`` (one forward per pass) or ``"slide"`` (tiled, see `slide_logits`).
        crop_size, stride: tile size and step ``(h, w)`` (or one int for both) for ``"slide"``;
            ``stride`` defaults to 2/3 of the crop.
        scales: the input is resized bilinearly by each factor, the logits resized back to
            ``(H, W)``; the softmax is averaged over scales (and flips).
        flip: also run on the horizontally mirrored input, mirroring the output back.
        flip_lut: label -> mirror label (e.g. `DatasetInfo.flip_lut`), so the flipped pass's
            "left arm" probabilities count as "right arm"; identity when ``None``.
        align_corners: for every bilinear resize done here.
    """
    if images.dim() not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or clips (B, C, T, H, W), got shape {tuple(images.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    crop: tuple[int, int] | None = None
    step: tuple[int, int] | None = None
    if mode == "slide":
        if crop_size is None:
            raise ValueError("mode='slide' needs crop_size")
        crop = _pair(crop_size, "crop_size")
        step = _pair(stride, "stride") if stride is not None else _default_stride(crop)
        if step[0] > crop[0] or step[1] > crop[1]:
            raise ValueError(f"stride {step} larger than crop_size {crop} would leave pixels uncovered")
    scales = tuple(float(s) for s in scales)
    if not scales or any(not (s > 0 and math.isfinite(s)) for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
    perm = _flip_permutation(flip_lut, num_classes, images.device) if flip else None

    size = images.shape[-2:]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs = images.new_zeros((images.shape[0], num_classes, *images.shape[2:]), dtype=torch.float32)
            passes = 0
            for scale in scales:
                x = images if scale == 1.0 else resize(images, _scaled(size, scale), align_corners)
                for flipped in (False, True) if flip else (False,):
                    xi = x.flip(-1) if flipped else x
                    if crop is not None and step is not None:
                        logits = slide_logits(model, xi, num_classes, crop, step, align_corners=align_corners)
                    else:
                        logits = whole_logits(model, xi, num_classes, align_corners=align_corners)
                    if flipped:
                        logits = logits.flip(-1)
                        if perm is not None:
                            logits = logits.index_select(1, perm)
                    if logits.shape[-2:] != size:
                        logits = resize(logits, size, align_corners)
                    probs += logits.float().softmax(dim=1)
                    passes += 1
            return probs / passes
    finally:
        model.train(was_training)


def whole_logits(model: nn.Module, images: Tensor, num_classes: int, *, align_corners: bool = False) -> Tensor:
    """One forward pass; logits ``(B, K, [T,] H, W)`` at the input size."""
    out = model(images)
    logits = out["out"] if isinstance(out, dict) else out
    expected = (images.shape[0], num_classes, *images.shape[2:-2])
    if logits.dim() != images.dim() or tuple(logits.shape[:-2]) != expected:
        layout = ", ".join(str(n) for n in expected)
        raise ValueError(f"model returned logits of shape {tuple(logits.shape)}, expected ({layout}, H, W)")
    if logits.shape[-2:] != images.shape[-2:]:
        logits = resize(logits, images.shape[-2:], align_corners)
    return logits


def slide_logits(
    model: nn.Module,
    images: Tensor,
    num_classes: int,
    crop_size: tuple[int, int],
    stride: tuple[int, int],
    *,
    align_corners: bool = False,
) -> Tensor:
    """Sliding-window logits ``(B, K, H, W)``: tiles of ``crop_size`` every ``stride``, averaged.

    An image smaller than the crop is zero-padded at the bottom/right (zero = the mean colour of
    a normalised image) so every tile has the full crop size; the result is cropped back.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = max(crop_size[0] - height, 0), max(crop_size[1] - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    padded_h, padded_w = images.shape[-2:]
    logits = images.new_zeros((images.shape[0], num_classes, *images.shape[2:-2], padded_h, padded_w),
                              dtype=torch.float32)
    count = images.new_zeros((1, 1, padded_h, padded_w), dtype=torch.float32)
    for y0, y1, x0, x1 in slide_windows(padded_h, padded_w, crop_size, stride):
        logits[..., y0:y1, x0:x1] += whole_logits(
            model, images[..., y0:y1, x0:x1], num_classes, align_corners=align_corners
        ).float()
        count[..., y0:y1, x0:x1] += 1
    return (logits / count)[..., :height, :width]


def slide_windows(
    height: int, width: int, crop_size: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Tile boxes ``(y0, y1, x0, x1)`` covering an image, mmsegmentation's grid.

    ``max(H - crop_h + stride_h - 1, 0) // stride_h + 1`` rows of tiles starting every
    ``stride_h`` pixels, the last one shifted to end at the border (same for columns). Tiles are
    clipped to the image when it is smaller than the crop.
    """
    (crop_h, crop_w), (stride_h, stride_w) = crop_size, stride
    h_grids = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    w_grids = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    boxes = []
    for i in range(h_grids):
        y1 = min(i * stride_h + crop_h, height)
        y0 = max(y1 - crop_h, 0)
        for j in range(w_grids):
            x1 = min(j * stride_w + crop_w, width)
            x0 = max(x1 - crop_w, 0)
            boxes.append((y0, y1, x0, x1))
    return boxes


def _flip_permutation(flip_lut: FlipLut | None, num_classes: int, device: torch.device) -> Tensor | None:
    """Channel order that turns mirrored-input probabilities into probabilities of the mirror labels."""
    if flip_lut is None:
        return None
    lut = flip_lut.detach().cpu() if isinstance(flip_lut, Tensor) else torch.as_tensor(np.asarray(flip_lut))
    lut = lut.to(torch.int64)
    if lut.dim() != 1 or lut.numel() < num_classes:
        raise ValueError(f"flip_lut must be 1-D with at least num_classes={num_classes} entries")
    perm = lut[:num_classes]
    if not torch.equal(perm.sort().values, torch.arange(num_classes)):
        raise ValueError(f"flip_lut[:{num_classes}] must be a permutation of the classes, got {perm.tolist()}")
    if torch.equal(perm, torch.arange(num_classes)):
        return None
    return perm.to(device)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    try:
        pair = (operator.index(value),) * 2 if np.ndim(value) == 0 else tuple(map(operator.index, value))
    except TypeError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair (h, w) of them, got {value!r}")
    return pair[0], pair[1]


def _default_stride(crop: tuple[int, int]) -> tuple[int, int]:
    return (max(1, math.ceil(crop[0] * DEFAULT_STRIDE_RATE)), max(1, math.ceil(crop[1] * DEFAULT_STRIDE_RATE)))


def _scaled(size: Sequence[int], scale: float) -> tuple[int, int]:
    return (max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5)))


def resize(x: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """Bilinear resize of ``(B, C, H, W)`` maps, or of every frame of ``(B, C, T, H, W)`` clips."""
    if x.dim() == 5:
        return frames_to_clips(resize(clips_to_frames(x), size, align_corners), x.shape[2])
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)
