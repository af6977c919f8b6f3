"""Criss-cross attention layers (2D and 3D) and the non-local block they are compared with."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ccnet.ops import criss_cross_attention, criss_cross_attention_3d, non_local_attention


def _reduced_channels(in_channels: int, reduction: int) -> int:
    if in_channels < 1 or reduction < 1:
        raise ValueError(f"in_channels and reduction must be positive, got {in_channels} and {reduction}")
    return max(in_channels // reduction, 1)


class CrissCrossAttention(nn.Module):
    """Criss-cross attention block: ``gamma * CCA(q(x), k(x), v(x)) + x``.

    Query and key are 1x1 convs to ``in_channels // reduction`` channels, value a 1x1 conv to
    ``in_channels``; ``gamma`` starts at 0 so the block starts as the identity. Parameter names
    (``query_conv``, ``key_conv``, ``value_conv``, ``gamma`` of shape [1]) match the original
    implementation, so its state dicts load 1:1.
    """

    def __init__(self, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        qk_channels = _reduced_channels(in_channels, reduction)
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        return criss_cross_attention(query, key, value)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.query_conv.weight.dim() or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}({self.in_channels}) expects {self.query_conv.weight.dim()}D input "
                f"with {self.in_channels} channels, got shape {tuple(x.shape)}"
            )
        out = self.attend(self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma * out + x

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"


class CrissCrossAttention3d(CrissCrossAttention):
    """Criss-cross attention over ``(B, C, T, H, W)`` video features: each voxel sees its T-, H-
    and W-lines (itself once). Same parameter names as the 2D block, with 1x1x1 convs."""

    def __init__(self, in_channels: int, reduction: int = 8) -> None:
        nn.Module.__init__(self)
        qk_channels = _reduced_channels(in_channels, reduction)
        self.in_channels = in_channels
        self.query_conv = nn.Conv3d(in_channels, qk_channels, kernel_size=1)
        self.key_conv = nn.Conv3d(in_channels, qk_channels, kernel_size=1)
        self.value_conv = nn.Conv3d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        return criss_cross_attention_3d(query, key, value)


class NonLocal2d(CrissCrossAttention):
    """Non-local block (embedded Gaussian) with the same q/k/v shapes as the criss-cross block:
    every pixel attends to all H*W pixels. The baseline of the paper's cost comparison."""

    def attend(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        return non_local_attention(query, key, value)
