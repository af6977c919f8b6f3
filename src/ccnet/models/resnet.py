"""Dilated ResNet backbones (ResNet-18/34/50/101/152) for semantic segmentation.

Written from scratch in the torchvision layout, so parameter names match 1:1:

* ``stem="standard"``: one 7x7 conv (``conv1``/``bn1``/``relu``/``maxpool``); a torchvision ResNet
  state dict loads with ``strict=True`` once its ``fc.*`` keys are dropped (there is no classifier).
* ``stem="deep"``: three 3x3 convs (``conv1``..``conv3``, ``bn1``..``bn3``), the ResNet-C stem of the
  official CCNet code (widths 64-64-128) and of mmsegmentation's ResNetV1c (widths 32-32-64).

Segmentation needs dense, high-resolution features, so the last stages trade their stride for a
dilation (atrous convolution): the output stride (input size / feature size) is 8, 16 or 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from ccnet.nn.norm import ACTIVATIONS, NORMS, make_activation, make_norm

__all__ = ["RESNETS", "BasicBlock", "Bottleneck", "ResNet", "build_resnet", "resnet18", "resnet34",
           "resnet50", "resnet101", "resnet152"]

STEMS = ("standard", "deep")
DILATION_SCHEDULES = ("full", "contract")
# output stride -> (stride of layer1..layer4, dilation of layer1..layer4)
_STAGE_SETTINGS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}
_STAGE_PLANES = (64, 128, 256, 512)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv whose padding equals its dilation, so stride 1 keeps the spatial size."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                     bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus identity (ResNet-18/34). Both convs use the block's dilation."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride, dilation)
        self.bn1 = make_norm(norm, planes)
        self.relu = make_activation(act)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = make_norm(norm, planes)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride and dilation live here, as in torchvision "ResNet v1.5"), 1x1 expand."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = _conv1x1(planes, out_channels)
        self.bn3 = make_norm(norm, out_channels)
        self.relu = make_activation(act)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _block_dilations(num_blocks: int, dilation: int, schedule: str,
                     multi_grid: Sequence[int] | None = None) -> list[int]:
    """Dilation of each block of one stage.

    ``full``: every block uses ``dilation`` (official CCNet). ``contract``: the first block of a
    dilated stage uses ``dilation // 2`` (torchvision's ``replace_stride_with_dilation``,
    mmsegmentation's ``contract_dilation``). ``multi_grid`` overrides the schedule: block ``i``
    uses ``dilation * multi_grid[i]``.
    """
    if multi_grid is not None:
        return [dilation * m for m in multi_grid]
    dilations = [dilation] * num_blocks
    if schedule == "contract" and dilation > 1:
        dilations[0] = dilation // 2
    return dilations


class ResNet(nn.Module):
    """Dilated ResNet backbone returning the outputs of its four stages.

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50 and deeper).
        layers: number of blocks in each of the four stages.
        output_stride: 8, 16 or 32; the stages after that stride are dilated instead of strided.
        stem: ``"standard"`` (7x7 conv, torchvision) or ``"deep"`` (three 3x3 convs, official CCNet).
        stem_widths: output channels of the three deep-stem convs; ignored by the standard stem.
        ceil_mode: ``ceil_mode`` of the stem max-pool (True in the official CCNet, False in
            torchvision and mmsegmentation).
        dilation_schedule: ``"full"`` or ``"contract"``, see `_block_dilations`.
        multi_grid: per-block dilation multipliers of ``layer4`` (one per block, e.g. ``(1, 2, 4)``);
            when given, block ``i`` of ``layer4`` uses ``layer4's dilation * multi_grid[i]`` and the
            dilation schedule is ignored for ``layer4``.
        norm: norm layer name (see `ccnet.nn.norm.make_norm`).
        act: activation name used throughout the backbone.
        in_channels: channels of the input image.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], *,
                 output_stride: int = 8, stem: str = "deep", stem_widths: Sequence[int] = (64, 64, 128),
                 ceil_mode: bool = True, dilation_schedule: str = "full",
                 multi_grid: Sequence[int] | None = None, norm: str = "bn", act: str = "relu",
                 in_channels: int = 3) -> None:
        super().__init__()
        if not (isinstance(block, type) and issubclass(block, (BasicBlock, Bottleneck))):
            raise ValueError(f"block must be BasicBlock or Bottleneck, got {block!r}")
        layers = tuple(layers)
        if len(layers) != 4 or not all(_is_positive_int(n) for n in layers):
            raise ValueError(f"layers must be 4 positive ints, got {layers!r}")
        if output_stride not in _STAGE_SETTINGS:
            raise ValueError(f"output_stride must be one of {tuple(_STAGE_SETTINGS)}, got {output_stride!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        stem_widths = tuple(stem_widths)
        if len(stem_widths) != 3 or not all(_is_positive_int(w) for w in stem_widths):
            raise ValueError(f"stem_widths must be 3 positive ints, got {stem_widths!r}")
        if dilation_schedule not in DILATION_SCHEDULES:
            raise ValueError(f"dilation_schedule must be one of {DILATION_SCHEDULES}, "
                             f"got {dilation_schedule!r}")
        if multi_grid is not None:
            multi_grid = tuple(multi_grid)
            if len(multi_grid) != layers[3] or not all(_is_positive_int(m) for m in multi_grid):
                raise ValueError(f"multi_grid must be {layers[3]} positive ints (one per layer4 block), "
                                 f"got {multi_grid!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
        if not _is_positive_int(in_channels):
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")

        self.output_stride = output_stride
        self.stem = stem
        self.dilation_schedule = dilation_schedule
        self.multi_grid = multi_grid
        self._norm = norm
        self._act = act

        if stem == "standard":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = make_norm(norm, 64)
            self.relu = make_activation(act)
            channels = 64
        else:
            w0, w1, w2 = stem_widths
            self.conv1 = _conv3x3(in_channels, w0, stride=2)
            self.bn1 = make_norm(norm, w0)
            self.relu1 = make_activation(act)
            self.conv2 = _conv3x3(w0, w1)
            self.bn2 = make_norm(norm, w1)
            self.relu2 = make_activation(act)
            self.conv3 = _conv3x3(w1, w2)
            self.bn3 = make_norm(norm, w2)
            self.relu3 = make_activation(act)
            channels = w2
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=ceil_mode)

        strides, dilations = _STAGE_SETTINGS[output_stride]
        stages = []
        settings = zip(_STAGE_PLANES, layers, strides, dilations, strict=True)
        for i, (planes, num_blocks, stride, dilation) in enumerate(settings):
            grid = multi_grid if i == 3 else None
            block_dilations = _block_dilations(num_blocks, dilation, dilation_schedule, grid)
            stage, channels = self._make_layer(block, channels, planes, stride, block_dilations)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels: tuple[int, int, int, int] = tuple(p * block.expansion for p in _STAGE_PLANES)
        self._init_weights()

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int,
                    stride: int, dilations: Sequence[int]) -> tuple[nn.Sequential, int]:
        """One stage; the first block carries the stride and, if needed, a projection shortcut."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(in_channels, out_channels, stride),
                                       make_norm(self._norm, out_channels))
        blocks = [block(in_channels, planes, stride, dilations[0], downsample, self._norm, self._act)]
        for dilation in dilations[1:]:
            blocks.append(block(out_channels, planes, 1, dilation, None, self._norm, self._act))
        return nn.Sequential(*blocks), out_channels

    def _init_weights(self) -> None:
        """He init for convs (as torchvision); norms start as the identity (weight 1, bias 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stem convs and max-pool: output stride 4."""
        if self.stem == "standard":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.relu1(self.bn1(self.conv1(x)))
            x = self.relu2(self.bn2(self.conv2(x)))
            x = self.relu3(self.bn3(self.conv3(x)))
        return self.maxpool(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns ``[layer1, layer2, layer3, layer4]`` outputs (strides 4, 8 and then per output_stride)."""
        x = self.forward_stem(x)
        outs = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outs.append(x)
        return outs


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (Bottleneck, 3-4-23-3), the CCNet default."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (Bottleneck, 3-8-36-3)."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


_BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
             "resnet152": resnet152}
RESNETS = tuple(_BUILDERS)


def build_resnet(name: str, **kwargs) -> ResNet:
    """Backbone by name (one of `RESNETS`); ``kwargs`` go to `ResNet`."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown resnet {name!r}; expected one of {RESNETS}")
    return _BUILDERS[name](**kwargs)
