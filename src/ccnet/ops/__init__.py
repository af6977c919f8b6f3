"""Functional operators: criss-cross attention (2D and 3D; implementations chosen by ``backend``),
its attention weights, the attention block as one op, dense references, and adaptive average
pooling that stays correct at every size in exported graphs."""

from ccnet.ops.attention_block import criss_cross_block
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
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_attention_3d_reference",
    "criss_cross_attention_matrix_reference",
    "criss_cross_attention_reference",
    "criss_cross_attention_weights",
    "criss_cross_block",
    "criss_cross_mask",
    "non_local_attention",
]
