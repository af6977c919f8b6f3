"""torchvision ImageNet ResNets (``resnet50-*.pth``, ``resnet101-*.pth``, ...) as ccnet backbones.

ccnet's `ccnet.models.ResNet` with ``stem="standard"`` has torchvision's parameter names,
so a torchvision state dict loads once its classifier (``fc.*``) is dropped. The matching
settings are ``ceil_mode=False`` and ``dilation_schedule="contract"``: torchvision's
``replace_stride_with_dilation`` keeps the previous dilation in the first block of a dilated
stage (layer3: 1, 2, 2, ...; layer4: 2, 4, 4 at output stride 8).

This module does not import torchvision (it is not a dependency); it only reads its files.
"""

from __future__ import annotations

import torch

from ccnet.interop.formats import Converted, resnet_arch

__all__ = ["TORCHVISION_BACKBONE_KWARGS", "convert_torchvision"]

TORCHVISION_BACKBONE_KWARGS = dict(stem="standard", ceil_mode=False, dilation_schedule="contract")


def convert_torchvision(state: dict[str, torch.Tensor], source: str) -> Converted:
    """torchvision ResNet state dict -> `ResNet` keys (``fc.*`` dropped)."""
    from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

    converted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return Converted(
        format="torchvision", kind="backbone", state=converted, origin={k: k for k in converted},
        dropped=[k for k in state if k.startswith("fc.")], arch=resnet_arch(state, source),
        backbone_kwargs=dict(TORCHVISION_BACKBONE_KWARGS), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )
