"""Functional operators: criss-cross attention (2D, 3D, and 3D on clips stored frame by frame;
implementations chosen by ``backend``), its attention weights, the attention block as one op, dense
references, and adaptive average pooling that stays correct at every size in exported graphs."""

from ccnet.ops.attention_block import criss_cross_block
from ccnet.ops.clips import clip_criss_cross_attention, clips_to_frames, frames_to_clips
from ccnet.ops.criss_cross import (
    BACKENDS,
    check_backend,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_weights,
)
from ccnet.ops.pooling import adaptive_avg_pool2d, adaptive_avg_pool2d_dynamic
from ccnet.ops.reference import (
    criss_cross_attention_3d_reference,
    criss_cross_attention_matrix_reference,
    criss_cross_attention_reference,
    criss_cross_mask,
    non_local_attention,
)

__all__ = [
    "BACKENDS",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_dynamic",
    "check_backend",
    "clip_criss_cross_attention",
    "clips_to_frames",
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_attention_3d_reference",
    "criss_cross_attention_matrix_reference",
    "criss_cross_attention_reference",
    "criss_cross_attention_weights",
    "criss_cross_block",
    "criss_cross_mask",
    "frames_to_clips",
    "non_local_attention",
]
