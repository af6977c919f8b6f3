"""Functional operators: criss-cross attention (2D and 3D; implementations chosen by ``backend``),
its attention weights, and dense references."""

from ccnet.ops.criss_cross import (
    BACKENDS,
    check_backend,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_weights,
)
from ccnet.ops.reference import (
    criss_cross_attention_3d_reference,
    criss_cross_attention_matrix_reference,
    criss_cross_attention_reference,
    criss_cross_mask,
    non_local_attention,
)

__all__ = [
    "BACKENDS",
    "check_backend",
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_attention_3d_reference",
    "criss_cross_attention_matrix_reference",
    "criss_cross_attention_reference",
    "criss_cross_attention_weights",
    "criss_cross_mask",
    "non_local_attention",
]
