"""Layers: criss-cross attention blocks, the RCCA head, the non-local baseline, the pyramid context
modules (PPM, ASPP) and their head, norms."""

from ccnet.nn.attention import CrissCrossAttention, CrissCrossAttention3d, NonLocal2d, RecurrentCrissCrossAttention
from ccnet.nn.context import ASPP, CONTEXTS, ContextHead, PyramidPooling, build_context_module
from ccnet.nn.norm import (
    FrozenBatchNorm2d,
    convert_sync_batchnorm,
    make_activation,
    make_norm,
)
from ccnet.nn.rcca import FCNHead, RCCAHead, RCCAModule

__all__ = [
    "ASPP",
    "CONTEXTS",
    "ContextHead",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "FCNHead",
    "FrozenBatchNorm2d",
    "NonLocal2d",
    "PyramidPooling",
    "RCCAHead",
    "RCCAModule",
    "RecurrentCrissCrossAttention",
    "build_context_module",
    "convert_sync_batchnorm",
    "make_activation",
    "make_norm",
]
