"""CCNet: a dilated ResNet, the recurrent criss-cross attention head and an auxiliary FCN head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.models.hub import PretrainedMixin
from ccnet.models.resnet import build_resnet
from ccnet.nn.context import ContextHead, build_context_module
from ccnet.nn.rcca import FCNHead, RCCAHead


class CCNet(PretrainedMixin, nn.Module):
    """CCNet for semantic segmentation (Huang et al., ICCV 2019 / TPAMI 2020).

    ``image -> dilated ResNet -> RCCA head (stage 4) -> logits``, plus an auxiliary FCN head on
    stage 3 for training. Defaults follow the official Cityscapes model (ResNet-101, deep stem,
    output stride 8, R=2, LeakyReLU head norms, auxiliary head with a conv bias, upsampling with
    ``align_corners=True``); see `ccnet.models.presets` for named published variants.

    ``forward(x)`` returns a dict: ``"out"`` (logits), in training mode also ``"aux"`` (when
    ``aux``) and ``"embedding"`` (when ``consistency``: the features for the category consistent
    loss, always at feature resolution). ``"out"``/``"aux"`` are at input resolution, or at
    feature resolution with ``upsample=False``.

    ``context`` chooses the head's context module, at the same place on the same backbone (the
    paper's ablation): ``"rcca"`` (CCNet, ``recurrence`` loops), ``"nonlocal"`` (one non-local
    block), ``"ppm"`` (PSPNet's pyramid pooling, ``ppm_bins``), ``"aspp"`` (DeepLabv3's ASPP,
    ``aspp_rates`` in feature cells) or ``"none"`` (no context module: the FCN baseline).
    ``recurrence`` only applies to ``"rcca"``.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet101",
        recurrence: int = 2,
        *,
        output_stride: int = 8,
        stem: str = "deep",
        stem_widths: Sequence[int] = (64, 64, 128),
        ceil_mode: bool = True,
        dilation_schedule: str = "full",
        multi_grid: Sequence[int] | None = None,
        norm: str = "bn",
        backbone_act: str = "relu",
        head_act: str = "leaky_relu",
        head_channels: int = 512,
        reduction: int = 8,
        dropout: float = 0.1,
        aux: bool = True,
        aux_channels: int = 512,
        aux_bias: bool = True,
        consistency: bool = False,
        embedding_channels: int = 16,
        align_corners: bool = True,
        gamma_init: float = 0.0,
        context: str = "rcca",
        ppm_bins: Sequence[int] = (1, 2, 3, 6),
        aspp_rates: Sequence[int] = (12, 24, 36),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config: dict[str, Any] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items() if k not in ("self", "__class__")
        }
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.consistency = consistency
        self.backbone = build_resnet(
            backbone,
            output_stride=output_stride,
            stem=stem,
            stem_widths=stem_widths,
            ceil_mode=ceil_mode,
            dilation_schedule=dilation_schedule,
            multi_grid=multi_grid,
            norm=norm,
            act=backbone_act,
        )
        stage3_channels, stage4_channels = self.backbone.out_channels[2:]
        self.context = context
        head_kwargs: dict[str, Any] = dict(channels=head_channels, norm=norm, act=head_act, dropout=dropout,
                                           embedding_channels=embedding_channels if consistency else None)
        self.head: RCCAHead | ContextHead
        if context == "rcca":
            self.head = RCCAHead(stage4_channels, num_classes, recurrence=recurrence, reduction=reduction,
                                 gamma_init=gamma_init, **head_kwargs)
        else:
            module = build_context_module(context, head_channels, norm=norm, act=head_act, reduction=reduction,
                                          gamma_init=gamma_init, ppm_bins=ppm_bins, aspp_rates=aspp_rates,
                                          align_corners=align_corners)
            self.head = ContextHead(stage4_channels, num_classes, module, **head_kwargs)
        self.aux_head = (
            FCNHead(stage3_channels, num_classes, channels=aux_channels, bias=aux_bias, norm=norm, act=head_act,
                    dropout=dropout)
            if aux
            else None
        )

    @property
    def recurrence(self) -> int:
        """Loops of criss-cross attention (0 when the head has another context module)."""
        return self.head.recurrence if isinstance(self.head, RCCAHead) else 0

    def _resize(self, logits: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=self.align_corners)

    def _outputs(self, logits: Tensor, embedding: Tensor | None, stages: Sequence[Tensor]) -> dict[str, Tensor]:
        """``{"out": logits}``; in training mode also ``"aux"`` (from stage 3) and ``"embedding"``."""
        outputs = {"out": logits}
        if self.training:
            if self.aux_head is not None:
                outputs["aux"] = self.aux_head(stages[2])
            if embedding is not None:
                outputs["embedding"] = embedding
        return outputs

    def forward(self, x: Tensor, upsample: bool = True) -> dict[str, Tensor]:
        if x.dim() != 4:
            raise ValueError(f"CCNet expects (B, C, H, W) images, got shape {tuple(x.shape)}")
        stages = self.backbone(x)
        logits, embedding = self.head(stages[3])
        outputs = self._outputs(logits, embedding, stages)
        if upsample:
            for name in ("out", "aux"):
                if name in outputs:
                    outputs[name] = self._resize(outputs[name], x.shape[-2:])
        return outputs
