"""Mask R-CNN (torchvision) with a context block inside its ResNet-FPN backbone.

Placement: the TPAMI CCNet paper adds RCCA to the Mask R-CNN backbone following the non-local
paper, which puts its block "right before the last residual block of res4". res4 is torchvision's
``layer3`` (stride 16; 6 blocks in ResNet-50, 23 in ResNet-101, 2 in ResNet-18), so the block
runs between ``layer3[-2]`` and ``layer3[-1]``; ``layer4`` and the FPN see its output.

The blocks (all ``gamma * attention + x`` with ``gamma`` starting at 0, so the network starts as
the plain Mask R-CNN):

* ``rcca``: `ccnet.nn.RecurrentCrissCrossAttention`, one criss-cross attention block
  applied ``recurrence`` times (2) with shared weights; query/key ``C // reduction`` channels.
* ``nonlocal``: `ccnet.nn.NonLocal2d` with the same query/key/value shapes: every position
  attends to all positions at once (the comparison of the paper).
* ``none``: the plain torchvision Mask R-CNN; its state dicts load 1:1.

Everything else (FPN, RPN, RoIAlign, box and mask heads, the resize-and-normalise transform) is
torchvision's ``MaskRCNN`` as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ccnet.interop.loading import read_backbone, read_weights, unwrap_state_dict
from ccnet.models.state_dict import load_state_dict_checked
from ccnet.nn import NonLocal2d, RecurrentCrissCrossAttention

__all__ = ["CONTEXTS", "NORMS", "ContextStage", "build_mask_rcnn", "context_block", "init_backbone_from",
           "load_mask_rcnn_weights", "mask_rcnn_from_config", "resnet_fpn"]

CONTEXTS = ("rcca", "nonlocal", "none")
NORMS = ("frozen_bn", "bn", "gn")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CONTEXT_PREFIX = "backbone.body.layer3.context."  # keys a plain Mask R-CNN does not have


def context_block(kind: str, channels: int, *, recurrence: int = 2, reduction: int = 8,
                  gamma_init: float = 0.0) -> nn.Module | None:
    """The context block ``kind`` (one of `CONTEXTS`) for ``channels``-channel features."""
    if kind == "rcca":
        return RecurrentCrissCrossAttention(channels, recurrence=recurrence, reduction=reduction,
                                            gamma_init=gamma_init)
    if kind == "nonlocal":
        return NonLocal2d(channels, reduction=reduction, gamma_init=gamma_init)
    if kind == "none":
        return None
    raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {kind!r}")


class ContextStage(nn.Module):
    """A ResNet stage with a context block right before its last residual block.

    The residual blocks keep their names (``0`` ... ``n-1``), so ImageNet and Mask R-CNN weights
    load unchanged; the block's parameters are ``context.*``.
    """

    def __init__(self, stage: nn.Sequential, context: nn.Module) -> None:
        super().__init__()
        if len(stage) < 1:
            raise ValueError("a ContextStage needs at least one residual block")
        for name, block in stage.named_children():
            self.add_module(name, block)
        self.num_blocks = len(stage)
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = [getattr(self, str(i)) for i in range(self.num_blocks)]
        for block in blocks[:-1]:
            x = block(x)
        return blocks[-1](self.context(x))


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(32, channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def resnet_fpn(backbone: str = "resnet50", *, norm: str = "frozen_bn", trainable_layers: int = 3,
               context: str = "rcca", recurrence: int = 2, reduction: int = 8, gamma_init: float = 0.0,
               fpn_channels: int = 256) -> BackboneWithFPN:
    """torchvision's ResNet-FPN (as ``resnet_fpn_backbone`` builds it: stages frozen up to
    ``trainable_layers``, FPN on layer1..4 plus a max-pooled level) with the context block in
    ``layer3``; the block is trainable."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    body = getattr(resnet, backbone)(weights=None, norm_layer=_norm_layer(norm))
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trained.append("bn1")
    for name, parameter in body.named_parameters():
        if not name.startswith(tuple(trained)):
            parameter.requires_grad_(False)
    block = context_block(context, _out_channels(body.layer3[-1]), recurrence=recurrence, reduction=reduction,
                          gamma_init=gamma_init)
    if block is not None:
        body.layer3 = ContextStage(body.layer3, block)
    stage_channels = [body.inplanes // 8 * 2**i for i in range(4)]
    return BackboneWithFPN(body, {f"layer{i + 1}": str(i) for i in range(4)}, stage_channels, fpn_channels,
                           extra_blocks=LastLevelMaxPool())


def build_mask_rcnn(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    context: str = "rcca",
    recurrence: int = 2,
    reduction: int = 8,
    gamma_init: float = 0.0,
    norm: str = "frozen_bn",
    trainable_layers: int = 3,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    box_head_channels: int = 1024,
    mask_head_channels: int = 256,
    **kwargs: Any,
) -> MaskRCNN:
    """torchvision's Mask R-CNN on a ResNet-FPN with a context block in ``layer3`` (see the module).

    ``num_classes``: object classes, *without* the background (torchvision's head gets one more).
    ``norm``: ``frozen_bn`` (torchvision's ``FrozenBatchNorm2d``: Detectron's choice with ImageNet
    weights), ``bn`` or ``gn`` (32 groups) to train from scratch, then with ``trainable_layers=5``.
    ``fpn_channels`` / ``box_head_channels`` / ``mask_head_channels`` (256 / 1024 / 256, the
    standard heads) can shrink the heads for small experiments. ``min_size`` (several values: one
    drawn per training image), ``max_size`` and ``kwargs`` (``box_batch_size_per_image=``,
    ``box_detections_per_img=``, ...) go to ``MaskRCNN``. The weights are random
    (``init_backbone_from``, ``load_mask_rcnn_weights`` fill them).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (object classes, background not counted), got {num_classes}")
    fpn = resnet_fpn(backbone, norm=norm, trainable_layers=trainable_layers, context=context, recurrence=recurrence,
                     reduction=reduction, gamma_init=gamma_init, fpn_channels=fpn_channels)
    classes = num_classes + 1  # torchvision counts the background
    sizes = (min_size,) if isinstance(min_size, int) else tuple(int(s) for s in min_size)
    model = MaskRCNN(
        fpn, num_classes=None, min_size=sizes, max_size=max_size,
        # torchvision's default heads, with their widths as parameters:
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_channels),
        box_predictor=FastRCNNPredictor(box_head_channels, classes),
        mask_head=MaskRCNNHeads(fpn_channels, (mask_head_channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, classes),
        **kwargs,
    )
    return model


def mask_rcnn_from_config(config: Any, num_classes: int) -> MaskRCNN:
    """`build_mask_rcnn` with the settings of a `ccnet.config.Config` (``detection``)."""
    det = config.detection
    return build_mask_rcnn(
        num_classes, backbone=det.backbone, context=det.context, recurrence=det.recurrence,
        reduction=det.reduction, gamma_init=det.gamma_init, norm=det.norm, trainable_layers=det.trainable_layers,
        min_size=det.min_size, max_size=det.max_size, fpn_channels=det.fpn_channels,
        box_head_channels=det.box_head_channels, mask_head_channels=det.mask_head_channels,
        rpn_batch_size_per_image=det.rpn_batch_size_per_image,
        box_batch_size_per_image=det.box_batch_size_per_image, box_detections_per_img=det.detections_per_image,
        box_score_thresh=det.score_thresh,
    )


def load_mask_rcnn_weights(model: MaskRCNN, src: str | Path | Mapping[str, Any]) -> MaskRCNN:
    """Load a torchvision Mask R-CNN state dict (a file, read with ``weights_only=True``, or a
    mapping) into ``model``: every tensor must fit by name and shape; the context block, which a
    plain Mask R-CNN does not have, keeps its initialisation (gamma 0: the plain network)."""
    if isinstance(src, (str, Path)):
        state, _ = read_weights(src)
        source = str(src)
    else:
        source = "state dict"
        state, _ = unwrap_state_dict(src, source)
    load_state_dict_checked(model, state, source, optional=(CONTEXT_PREFIX,),
                            target="this Mask R-CNN (a torchvision Mask R-CNN state dict was expected)")
    return model


def init_backbone_from(model: MaskRCNN, src: str | Path | Mapping[str, Any], format: str = "auto") -> MaskRCNN:
    """ImageNet weights into the ResNet of ``model`` (``backbone.body``), through
    `ccnet.interop` (a torchvision ``resnet50-*.pth`` loads as is; ``fc.*`` is dropped). Every
    ResNet weight must be in the file with the right shape; the context block keeps its init."""
    converted, source = read_backbone(src, format)
    load_state_dict_checked(model.backbone.body, converted.state, source, origin=converted.origin,
                            unmapped=converted.unmapped, source_name=converted.source_name,
                            target=f"the Mask R-CNN's ResNet (the file holds a {converted.arch}, format "
                                   f"{converted.format!r})",
                            optional=("layer3.context.",))
    return model
