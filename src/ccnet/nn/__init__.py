"""Layers: criss-cross attention blocks, the RCCA head, the non-local baseline, norms."""

from ccnet.nn.attention import CrissCrossAttention, CrissCrossAttention3d, NonLocal2d, RecurrentCrissCrossAttention
from ccnet.nn.norm import (
    FrozenBatchNorm2d,
    convert_sync_batchnorm,
    make_activation,
    make_norm,
)
from ccnet.nn.rcca import FCNHead, RCCAHead, RCCAModule

__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "FCNHead",
    "FrozenBatchNorm2d",
    "NonLocal2d",
    "RCCAHead",
    "RCCAModule",
    "RecurrentCrissCrossAttention",
    "convert_sync_batchnorm",
    "make_activation",
    "make_norm",
]
