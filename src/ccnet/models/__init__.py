"""Models: the dilated ResNet backbone, CCNet, CCNet3D (video), and named published presets."""

from ccnet.models.ccnet import CCNet
from ccnet.models.ccnet3d import CCNet3D
from ccnet.models.presets import (
    PRESETS,
    ccnet3d_camvid,
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
    "CCNet3D",
    "ResNet",
    "build_resnet",
    "ccnet3d_camvid",
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
