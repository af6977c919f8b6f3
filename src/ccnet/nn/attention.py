"""Criss-cross attention layers (2D and 3D) and the non-local block they are compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from ccnet.ops import (
    check_backend,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_weights,
    criss_cross_block,
    frames_to_clips,
    non_local_attention,
)
from ccnet.ops.attention_block import inference_in_place


class _ResidualAttention(nn.Module):
    """``gamma * attend(q(x), k(x), v(x)) + x`` with 1x1 q/k/v convs and ``gamma`` starting at 0.

    Subclasses choose the conv type (2D or 3D) and the attention operator.
    """

    conv: ClassVar[type[nn.Module]] = nn.Conv2d
    attend: ClassVar[Callable[[Tensor, Tensor, Tensor], Tensor]]

    def __init__(self, in_channels: int, reduction: int = 8, gamma_init: float = 0.0) -> None:
        super().__init__()
        if in_channels < 1 or reduction < 1:
            raise ValueError(f"in_channels and reduction must be positive, got {in_channels} and {reduction}")
        qk_channels = max(in_channels // reduction, 1)
        self.in_channels = in_channels
        self.query_conv = self.conv(in_channels, qk_channels, kernel_size=1)
        self.key_conv = self.conv(in_channels, qk_channels, kernel_size=1)
        self.value_conv = self.conv(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.full((1,), float(gamma_init)))

    def _check_input(self, x: Tensor) -> None:
        ndim = self.query_conv.weight.dim()
        if x.dim() != ndim or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}({self.in_channels}) expects {ndim}D input with {self.in_channels} "
                f"channels, got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self._add_residual(x, self._attend(self.query_conv(x), self.key_conv(x), self.value_conv(x)))

    def _add_residual(self, x: Tensor, out: Tensor) -> Tensor:
        if inference_in_place(out, x, self.gamma):
            return out.mul_(self.gamma).add_(x)  # inference: in place, no map-sized temporaries
        return torch.addcmul(x, self.gamma, out)  # gamma * out + x in one op

    def _attend(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        return type(self).attend(query, key, value)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"


class _CrissCrossBlock(_ResidualAttention):
    """A residual attention block whose attention is criss-cross attention (2D or 3D). Its
    operator takes a ``backend`` (`ccnet.ops.criss_cross_attention`: ``"auto"``,
    ``"function"``, ``"composite"`` or ``"triton"``), so a model can opt in to an implementation.

    With the ``"function"`` backend (the default) the whole block runs as one op,
    `ccnet.ops.criss_cross_block`: the same values and gradients as the composition of
    convs and attention, without its layout transposes in NCHW models."""

    def __init__(self, in_channels: int, reduction: int = 8, gamma_init: float = 0.0, backend: str = "auto") -> None:
        super().__init__(in_channels, reduction, gamma_init)
        self.backend = check_backend(backend)

    def forward(self, x: Tensor, frames: int | None = None) -> Tensor:
        self._check_input(x)
        q, k, v = self.query_conv, self.key_conv, self.value_conv
        return criss_cross_block(x, q.weight, q.bias, k.weight, k.bias, v.weight, v.bias, self.gamma,
                                 backend=self.backend, frames=frames)

    def _attend(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        return type(self).attend(query, key, value, backend=self.backend)

    def attention_weights(self, x: Tensor) -> tuple[Tensor, ...]:
        """The weights this block's attention gives each position of ``x`` (its own query and key
        convs, the op's own energies): one tensor per spatial axis, see
        `ccnet.ops.criss_cross_attention_weights`. For looking at, not for the forward."""
        return criss_cross_attention_weights(self.query_conv(x), self.key_conv(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.backend == "auto" else f", backend={self.backend!r}")


class CrissCrossAttention(_CrissCrossBlock):
    """Criss-cross attention block: ``gamma * CCA(q(x), k(x), v(x)) + x`` on ``(B, C, H, W)``.

    Query and key are 1x1 convs to ``in_channels // reduction`` channels, value a 1x1 conv to
    ``in_channels``; ``gamma`` starts at 0 (``gamma_init``) so the block starts as the identity. Parameter names
    (``query_conv``, ``key_conv``, ``value_conv``, ``gamma`` of shape [1]) match the original
    implementation, so its state dicts load 1:1. ``backend`` chooses the operator's
    implementation (see `ccnet.ops.criss_cross_attention`).
    """

    attend = staticmethod(criss_cross_attention)

    def forward(self, x: Tensor, frames: int | None = None) -> Tensor:
        """``x``: ``(B, C, H, W)`` images; or, with ``frames=T``, ``B // T`` clips of ``T``
        consecutive frames stored frame by frame, ``(clips * T, C, H, W)``: every position then
        attends along its T-, H- and W-lines within its clip (3D criss-cross attention), with the
        same 1x1 projections. ``frames=1`` gives the same values as the 2D attention. Either way the
        block runs as one op (`ccnet.ops.criss_cross_block`) where it can."""
        return super().forward(x, frames=frames)

    def attention_weights(self, x: Tensor, frames: int | None = None) -> tuple[Tensor, ...]:
        """As `_CrissCrossBlock.attention_weights`; with ``frames=T``, the 3D weights of
        ``x`` read as clips stored frame by frame (see `forward`): ``(clips, T, H, W, L)``
        per axis."""
        if frames is None:
            return super().attention_weights(x)
        query, key = (frames_to_clips(conv(x), frames) for conv in (self.query_conv, self.key_conv))
        return criss_cross_attention_weights(query, key)


class RecurrentCrissCrossAttention(nn.Module):
    """RCCA as a drop-in block for a backbone stage: one `CrissCrossAttention` applied
    ``recurrence`` times with shared weights (R=2: every position reaches every position), keeping
    the shape of ``(B, C, H, W)`` features. With ``gamma_init=0`` it starts as the identity, so a
    pretrained backbone is undisturbed at step 0. (The segmentation head, `RCCAHead`, runs
    the same loop between its own reduction convs.)"""

    def __init__(self, in_channels: int, recurrence: int = 2, reduction: int = 8, gamma_init: float = 0.0,
                 backend: str = "auto") -> None:
        super().__init__()
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence}")
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(in_channels, reduction=reduction, gamma_init=gamma_init, backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x

    def extra_repr(self) -> str:
        return f"recurrence={self.recurrence}"


class CrissCrossAttention3d(_CrissCrossBlock):
    """Criss-cross attention over ``(B, C, T, H, W)`` video features: each voxel sees its T-, H-
    and W-lines (itself once). Same parameter names as the 2D block, with 1x1x1 convs."""

    conv = nn.Conv3d
    attend = staticmethod(criss_cross_attention_3d)


class NonLocal2d(_ResidualAttention):
    """Non-local block (embedded Gaussian) with the same q/k/v shapes as the criss-cross block:
    every pixel attends to all H*W pixels. The baseline of the paper's cost comparison."""

    attend = staticmethod(non_local_attention)
