"""The recurrent criss-cross attention (RCCA) segmentation head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ccnet.nn.attention import CrissCrossAttention
from ccnet.nn.norm import make_norm


def conv_norm_act(in_channels: int, out_channels: int, *, norm: str, act: str, bias: bool = False) -> nn.Sequential:
    """3x3 conv + fused norm/activation, keyed ``.0`` (conv) and ``.1`` (norm) as the original code."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
        make_norm(norm, out_channels, act=act),
    )


def fusion_classifier(in_channels: int, channels: int, num_classes: int, *, norm: str, act: str,
                      dropout: float) -> nn.Sequential:
    """The head's last stage on ``concat(x, context)``: 3x3 conv + norm/act, dropout, 1x1
    classifier (keys ``0``, ``1``, ``3`` as the official ``bottleneck``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels + channels, channels, kernel_size=3, padding=1, bias=False),
        make_norm(norm, channels, act=act),
        nn.Dropout2d(dropout),
        nn.Conv2d(channels, num_classes, kernel_size=1),
    )


class RCCAHead(nn.Module):
    """RCCA head: reduce, criss-cross attention ``recurrence`` times, fuse with the input, classify.

    ``x -> conva -> cca^R -> convb -> concat(x, .) -> bottleneck -> logits``. The same ``cca``
    module (shared weights) runs every loop; two loops give every pixel a path to every other
    pixel. ``recurrence=0`` keeps the convolutions and skips attention (the paper's baseline).
    Module names follow the official code (``conva``, ``cca``, ``convb``, ``bottleneck``).
    `ccnet.nn.context.ContextHead` is the same frame around other context modules.

    ``gamma_init``: the attention's residual weight at the start (0 in the paper).

    With ``embedding_channels`` set, a 1x1 conv reduces the attention output to that many
    channels for the category consistent loss (TPAMI; 16 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 512,
        recurrence: int = 2,
        reduction: int = 8,
        norm: str = "bn",
        act: str = "leaky_relu",
        dropout: float = 0.1,
        embedding_channels: int | None = None,
        gamma_init: float = 0.0,
    ) -> None:
        super().__init__()
        if recurrence < 0:
            raise ValueError(f"recurrence must be >= 0, got {recurrence}")
        self.recurrence = recurrence
        self.conva = conv_norm_act(in_channels, channels, norm=norm, act=act)
        self.cca = CrissCrossAttention(channels, reduction=reduction, gamma_init=gamma_init)
        self.convb = conv_norm_act(channels, channels, norm=norm, act=act)
        self.bottleneck = fusion_classifier(in_channels, channels, num_classes, norm=norm, act=act, dropout=dropout)
        self.embedding = nn.Conv2d(channels, embedding_channels, kernel_size=1) if embedding_channels else None

    def forward(self, x: Tensor, recurrence: int | None = None,
                frames: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Returns ``(logits, embedding)``; ``embedding`` is None without ``embedding_channels``.
        ``recurrence`` overrides the number of loops for this call. ``frames=T``: ``x`` holds
        clips of T frames stored frame by frame and the attention runs across each clip (3D);
        the convolutions stay per frame (see `ccnet.models.CCNet3D`)."""
        loops = self.recurrence if recurrence is None else recurrence
        out = self.conva(x)
        for _ in range(loops):
            out = self.cca(out) if frames is None else self.cca(out, frames=frames)
        embedding = self.embedding(out) if self.embedding is not None else None
        out = self.convb(out)
        logits = self.bottleneck(torch.cat([x, out], dim=1))
        return logits, embedding


RCCAModule = RCCAHead
"""The official code's name for `RCCAHead`."""


class FCNHead(nn.Sequential):
    """Auxiliary head on stage-3 features: 3x3 conv, norm + activation, dropout, 1x1 classifier.

    Keys ``0``/``1``/``3`` as the official ``dsn`` branch (which uses a conv bias) and
    mmsegmentation's auxiliary head (256 channels, no bias) after renaming.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 512,
        bias: bool = True,
        norm: str = "bn",
        act: str = "leaky_relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=bias),
            make_norm(norm, channels, act=act),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
