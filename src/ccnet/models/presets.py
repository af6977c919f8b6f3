"""Named CCNet configurations that reproduce published models.

Each preset is a plain function returning a `CCNet`; keyword arguments override any
setting (for example ``norm="syncbn"`` for multi-GPU training).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ccnet.models.ccnet import CCNet
from ccnet.models.ccnet3d import CCNet3D

# The official CCNet (speedinghzl/CCNet): deep stem 64-64-128 with a ceil-mode max-pool, every
# block of a dilated stage dilated, InPlace-ABN head norms (BN + LeakyReLU 0.01), auxiliary
# "dsn" head with 512 channels and a conv bias, bilinear upsampling with align_corners=True.
_OFFICIAL: dict[str, Any] = dict(
    stem="deep",
    stem_widths=(64, 64, 128),
    ceil_mode=True,
    dilation_schedule="full",
    head_act="leaky_relu",
    head_channels=512,
    aux_channels=512,
    aux_bias=True,
    align_corners=True,
)

# mmsegmentation's CCNet R-xx-D8: ResNetV1c (deep stem 32-32-64, no ceil mode, first block of a
# dilated stage at half dilation), ReLU heads, auxiliary FCN head with 256 channels and no conv
# bias, align_corners=False.
_MMSEG: dict[str, Any] = dict(
    stem="deep",
    stem_widths=(32, 32, 64),
    ceil_mode=False,
    dilation_schedule="contract",
    head_act="relu",
    head_channels=512,
    aux_channels=256,
    aux_bias=False,
    align_corners=False,
)


def ccnet_official_cityscapes(num_classes: int = 19, **overrides: Any) -> CCNet:
    """The official Cityscapes CCNet: ResNet-101, R=2, output stride 8."""
    return CCNet(num_classes, **{**_OFFICIAL, "backbone": "resnet101", "recurrence": 2, **overrides})


def ccnet_mmseg_r50_d8(num_classes: int = 19, **overrides: Any) -> CCNet:
    """mmsegmentation ``ccnet_r50-d8``: ResNetV1c-50, R=2, output stride 8."""
    return CCNet(num_classes, **{**_MMSEG, "backbone": "resnet50", "recurrence": 2, **overrides})


def ccnet_mmseg_r101_d8(num_classes: int = 19, **overrides: Any) -> CCNet:
    """mmsegmentation ``ccnet_r101-d8``: ResNetV1c-101, R=2, output stride 8."""
    return CCNet(num_classes, **{**_MMSEG, "backbone": "resnet101", "recurrence": 2, **overrides})


def ccnet3d_camvid(num_classes: int = 11, **overrides: Any) -> CCNet3D:
    """The video model for CamVid (TPAMI, clips of T=5 frames): the official ResNet-101 CCNet
    with 3D criss-cross attention. R=3 (our choice; the paper does not say): the fewest loops
    that let every voxel reach the whole clip, as R=2 does for an image."""
    return CCNet3D(num_classes, **{**_OFFICIAL, "backbone": "resnet101", "recurrence": 3, **overrides})


PRESETS: dict[str, Callable[..., CCNet]] = {
    "ccnet_official_cityscapes": ccnet_official_cityscapes,
    "ccnet_mmseg_r50_d8": ccnet_mmseg_r50_d8,
    "ccnet_mmseg_r101_d8": ccnet_mmseg_r101_d8,
    "ccnet3d_camvid": ccnet3d_camvid,
}


def create_model(name: str, num_classes: int, **overrides: Any) -> CCNet:
    """Build a preset by name (see `PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name](num_classes, **overrides)
