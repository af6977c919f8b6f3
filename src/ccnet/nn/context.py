"""Context modules the paper compares RCCA with, and the head that holds any of them.

CCNet's ablation (ICCV 2019, Table 5; TPAMI 2020) puts different context modules at the same
place on the same backbone: ``x -> 3x3 reduce -> context -> 3x3 conv -> concat(x, .) -> fuse ->
classify``. `ContextHead` is that frame with the module passed in;
`ccnet.nn.rcca.RCCAHead` is the same frame with recurrent criss-cross attention (kept as
its own class so the published CCNet weights keep their keys). The modules here map a
``(B, C, H, W)`` map to ``(B, C, H, W)``:

* `PyramidPooling` -- PSPNet's pyramid pooling module (Zhao et al., CVPR 2017): average
  pooling to 1x1, 2x2, 3x3 and 6x6 bins, a 1x1 conv per bin, upsampled and concatenated with
  the input, then a 3x3 conv.
* `ASPP` -- DeepLabv3's atrous spatial pyramid pooling (Chen et al., 2017): a 1x1 conv,
  three 3x3 convs with growing dilation and an image-level pooling branch, concatenated and
  projected by a 1x1 conv.
* `ccnet.nn.attention.NonLocal2d` -- one non-local block, every pixel attending to all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.nn.attention import NonLocal2d
from ccnet.nn.norm import make_norm
from ccnet.nn.rcca import conv_norm_act, fusion_classifier
from ccnet.ops import adaptive_avg_pool2d

CONTEXTS = ("rcca", "nonlocal", "ppm", "aspp", "none")
"""Context modules `ccnet.models.CCNet` can put in its head (``context=``)."""


def conv1x1_norm_act(in_channels: int, out_channels: int, *, norm: str, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                         make_norm(norm, out_channels, act=act))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: ``concat(x, up(conv1x1(avgpool_b(x))) for b in bins)``,
    then a 3x3 conv back to ``channels``. Each bin branch has ``channels // len(bins)`` channels,
    as in PSPNet. Every pixel receives the average of the whole map (bin 1) and of its region at
    each coarser grid: global context without pixel-specific weights. The pooling is
    `ccnet.ops.adaptive_avg_pool2d`, so exported graphs pool correctly at every size."""

    def __init__(self, channels: int, bins: Sequence[int] = (1, 2, 3, 6), *, norm: str = "bn",
                 act: str = "relu", align_corners: bool = True) -> None:
        super().__init__()
        if not bins or any(b < 1 for b in bins):
            raise ValueError(f"pyramid pooling bins must be positive integers, got {list(bins)}")
        self.bins = tuple(int(b) for b in bins)
        self.align_corners = align_corners
        branch = max(channels // len(self.bins), 1)
        self.stages = nn.ModuleList(conv1x1_norm_act(channels, branch, norm=norm, act=act) for _ in self.bins)
        self.bottleneck = conv_norm_act(channels + branch * len(self.bins), channels, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(stage(adaptive_avg_pool2d(x, b)), size=size, mode="bilinear",
                          align_corners=self.align_corners)
            for b, stage in zip(self.bins, self.stages, strict=True)
        ]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


class ASPP(nn.Module):
    """DeepLabv3's atrous spatial pyramid pooling: ``[conv1x1, conv3x3 dilated r for r in rates,
    image pooling]``, concatenated, then a 1x1 projection to ``channels``.

    ``rates`` are in feature cells: DeepLabv3 uses (6, 12, 18) at output stride 16 and
    (12, 24, 36) at 8 on 513x513 crops; scale them with the feature map (a 3x3 conv whose
    dilation exceeds the map only sees its centre tap, the reason for the pooling branch)."""

    def __init__(self, channels: int, rates: Sequence[int] = (12, 24, 36), *, norm: str = "bn",
                 act: str = "relu") -> None:
        super().__init__()
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"ASPP rates must be positive integers, got {list(rates)}")
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList([conv1x1_norm_act(channels, channels, norm=norm, act=act)])
        for rate in self.rates:
            self.branches.append(nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=3, padding=rate, dilation=rate, bias=False),
                make_norm(norm, channels, act=act),
            ))
        self.image_pool = conv1x1_norm_act(channels, channels, norm=norm, act=act)
        self.project = conv1x1_norm_act(channels * (len(self.rates) + 2), channels, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


class ContextHead(nn.Module):
    """The RCCA head's frame around any context module (``None``: none, a plain FCN-style head).

    ``x -> conva -> context -> convb -> concat(x, .) -> bottleneck -> logits``, with the same
    names, shapes and ``forward`` result ``(logits, embedding)`` as
    `ccnet.nn.rcca.RCCAHead`, so that context modules are compared at the same place on
    the same backbone. ``embedding_channels``: a 1x1 conv of the context output for the category
    consistent loss, as in the RCCA head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        context: nn.Module | None = None,
        *,
        channels: int = 512,
        norm: str = "bn",
        act: str = "leaky_relu",
        dropout: float = 0.1,
        embedding_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.conva = conv_norm_act(in_channels, channels, norm=norm, act=act)
        self.context = context if context is not None else nn.Identity()
        self.convb = conv_norm_act(channels, channels, norm=norm, act=act)
        self.bottleneck = fusion_classifier(in_channels, channels, num_classes, norm=norm, act=act, dropout=dropout)
        self.embedding = nn.Conv2d(channels, embedding_channels, kernel_size=1) if embedding_channels else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Returns ``(logits, embedding)``; ``embedding`` is None without ``embedding_channels``."""
        out = self.context(self.conva(x))
        embedding = self.embedding(out) if self.embedding is not None else None
        logits = self.bottleneck(torch.cat([x, self.convb(out)], dim=1))
        return logits, embedding


def build_context_module(
    name: str,
    channels: int,
    *,
    norm: str = "bn",
    act: str = "leaky_relu",
    reduction: int = 8,
    gamma_init: float = 0.0,
    ppm_bins: Sequence[int] = (1, 2, 3, 6),
    aspp_rates: Sequence[int] = (12, 24, 36),
    align_corners: bool = True,
) -> nn.Module | None:
    """The context module ``name`` of `CONTEXTS` (except ``"rcca"``, which is
    `ccnet.nn.rcca.RCCAHead`) on ``channels`` channels; ``None`` for ``"none"``."""
    if name == "none":
        return None
    if name == "nonlocal":
        return NonLocal2d(channels, reduction=reduction, gamma_init=gamma_init)
    if name == "ppm":
        return PyramidPooling(channels, ppm_bins, norm=norm, act=act, align_corners=align_corners)
    if name == "aspp":
        return ASPP(channels, aspp_rates, norm=norm, act=act)
    raise ValueError(f"unknown context module {name!r}; expected one of {', '.join(CONTEXTS)}")
