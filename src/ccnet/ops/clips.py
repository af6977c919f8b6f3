"""Clips stored frame by frame: ``(clips * T, C, H, W)`` frame tensors read as ``(clips, C, T, H, W)``
clip tensors, views both ways, and 3D criss-cross attention on them.

A video model keeps a clip's frames as consecutive batch entries (2D backbones see frames); its
attention needs them as one 3D volume. The views cost nothing, and a channels-last frame tensor is
a channels-last-3d clip tensor, the attention's fast layout.
"""

from __future__ import annotations

from torch import Tensor

from ccnet.ops.criss_cross import criss_cross_attention_3d


def check_frames(batch: int, frames: int) -> None:
    """A one-line ValueError unless ``batch`` frames split into clips of ``frames`` frames (both may
    be symbolic under an exporter with dynamic shapes)."""
    if frames < 1 or batch % frames:
        raise ValueError(f"a batch of {batch} frames does not split into clips of {frames} frames")


def frames_to_clips(t: Tensor, frames: int) -> Tensor:
    """``(N * T, C, H, W)`` frames stored clip by clip -> ``(N, C, T, H, W)`` clips (a view)."""
    check_frames(t.shape[0], frames)
    return t.unflatten(0, (t.shape[0] // frames, frames)).transpose(1, 2)


def clips_to_frames(t: Tensor) -> Tensor:
    """Inverse of `frames_to_clips`: ``(N, C, T, H, W)`` -> ``(N * T, C, H, W)`` (a view where
    the clip tensor's layout allows, as for channels-last-3d; a copy otherwise)."""
    return t.transpose(1, 2).flatten(0, 1)


def clip_criss_cross_attention(query: Tensor, key: Tensor, value: Tensor, frames: int, backend: str = "auto") -> Tensor:
    """3D criss-cross attention on clips stored frame by frame: ``(clips * frames, C, H, W)``
    tensors, consecutive ``frames`` entries forming one clip; ``backend`` as in
    `ccnet.ops.criss_cross_attention_3d`. Views in and out."""
    query, key, value = (frames_to_clips(t, frames) for t in (query, key, value))
    return clips_to_frames(criss_cross_attention_3d(query, key, value, backend=backend))
