"""Layers: criss-cross attention modules, the RCCA head, non-local block, norms."""

from ccnet.nn.norm import (
    FrozenBatchNorm2d,
    convert_sync_batchnorm,
    make_activation,
    make_norm,
)

__all__ = ["FrozenBatchNorm2d", "convert_sync_batchnorm", "make_activation", "make_norm"]
