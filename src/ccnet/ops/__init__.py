"""Functional operators: criss-cross attention (2D and 3D) and their dense references."""

from ccnet.ops.attention_block import criss_cross_block
from ccnet.ops.criss_cross import criss_cross_attention, criss_cross_attention_3d
from ccnet.ops.reference import (
    criss_cross_attention_3d_reference,
    criss_cross_attention_reference,
    criss_cross_mask,
    non_local_attention,
)

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_attention_3d_reference",
    "criss_cross_attention_reference",
    "criss_cross_block",
    "criss_cross_mask",
    "non_local_attention",
]
