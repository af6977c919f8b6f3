"""Models: the dilated ResNet backbone, CCNet, and named published presets."""

from ccnet.models.ccnet import CCNet
from ccnet.models.presets import (
    PRESETS,
    ccnet_mmseg_r50_d8,
    ccnet_mmseg_r101_d8,
    ccnet_official_cityscapes,
    create_model,
)
from ccnet.models.resnet import RESNETS, ResNet, build_resnet, resnet18, resnet34, resnet50, resnet101, resnet152

__all__ = [
    "PRESETS",
    "RESNETS",
    "CCNet",
    "ResNet",
    "build_resnet",
    "ccnet_mmseg_r50_d8",
    "ccnet_mmseg_r101_d8",
    "ccnet_official_cityscapes",
    "create_model",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]
