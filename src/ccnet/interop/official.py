"""Checkpoints of the official CCNet code (speedinghzl/CCNet) and its ImageNet initialisation.

Segmentation checkpoints (``format="official"``): ResNet keys at the top level (``conv1``, ``bn1``,
..., ``layer4.2.bn3``), the RCCA head under ``head.*`` and the auxiliary head under ``dsn.*``,
possibly behind a ``module.`` prefix. They map 1:1 onto the ``ccnet_official_cityscapes`` preset
(``backbone.*``, ``head.*``, ``aux_head.*``) with two exact transformations:

* every norm is InPlace-ABN, whose scale is ``|weight| + eps``: that value becomes the
  BatchNorm weight (`ccnet.interop.inplace_abn`);
* the official code feeds BGR images (OpenCV) minus the BGR mean (104.008, 116.669, 122.679),
  not divided by a std. The first conv's input channels are reversed, so the converted model
  takes RGB like every ccnet model, with ``mean = (122.679, 116.669, 104.008)`` and
  ``std = (1, 1, 1)`` (recorded in the model's config).

Loss-function buffers saved along (``criterion.*``) are dropped.

``format="official_imagenet"``: ``resnet101-imagenet.pth``, the deep-stem (64-64-128) ResNet-101
of CSAIL's semantic-segmentation-pytorch that the official training starts from. Plain
BatchNorm; RGB input with ImageNet mean/std (that code's own preprocessing), so no channel flip.
Its classifier ``fc.*`` is dropped.
"""

from __future__ import annotations

import torch

from ccnet.interop.formats import Converted, resnet_arch
from ccnet.interop.inplace_abn import abn_weight_to_bn, is_norm_weight, norm_prefixes

__all__ = ["OFFICIAL_MEAN", "OFFICIAL_STD", "convert_official", "convert_official_imagenet"]

# The official IMG_MEAN is BGR (104.00698793, 116.66876762, 122.67891434); in RGB order:
OFFICIAL_MEAN = (122.67891434, 116.66876762, 104.00698793)
OFFICIAL_STD = (1.0, 1.0, 1.0)
_DROPPED_PREFIXES = ("criterion.",)


def _stem_widths(state: dict[str, torch.Tensor], default: tuple[int, int, int] = (64, 64, 128)) -> list[int]:
    """Deep-stem widths from the conv shapes (defaults where a conv is absent: reported as missing later)."""
    return [int(state[f"conv{i}.weight"].shape[0]) if f"conv{i}.weight" in state else default[i - 1]
            for i in (1, 2, 3)]


def _official_to_ccnet(key: str) -> str:
    if key.startswith("dsn."):
        return "aux_head." + key[len("dsn."):]
    if key.startswith("head."):
        return key
    return "backbone." + key


def _ccnet_to_official(key: str) -> str:
    if key.startswith("aux_head."):
        return "dsn." + key[len("aux_head."):]
    if key.startswith("backbone."):
        return key[len("backbone."):]
    return key


def convert_official(state: dict[str, torch.Tensor], source: str, *, rgb: bool = True) -> Converted:
    """Official CCNet state dict -> ``ccnet_official_cityscapes`` keys and BatchNorm weights.

    ``rgb=False`` keeps the first conv as it is (a model that takes BGR input).
    """
    norms = norm_prefixes(state)
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped = []
    for key, value in state.items():
        if key.startswith(_DROPPED_PREFIXES):
            dropped.append(key)
            continue
        if is_norm_weight(key, norms):
            value = abn_weight_to_bn(value)
        if key == "conv1.weight" and rgb and value.dim() == 4 and value.shape[1] == 3:
            value = value.flip(1)
        new = _official_to_ccnet(key)
        converted[new] = value
        origin[new] = key
    arch = resnet_arch(state, source)
    return Converted(
        format="official", kind="model", state=converted, origin=origin, dropped=dropped,
        source_name=_ccnet_to_official, arch=arch, preset="ccnet_official_cityscapes",
        backbone_kwargs=dict(stem="deep", stem_widths=_stem_widths(state), ceil_mode=True, dilation_schedule="full"),
        class_names=_cityscapes_names(converted), palette=_cityscapes_palette(converted),
        mean=OFFICIAL_MEAN if rgb else OFFICIAL_MEAN[::-1], std=OFFICIAL_STD,
    )


def _cityscapes_info(state: dict[str, torch.Tensor]):
    """The released official models are Cityscapes models: 19 classes get Cityscapes' names."""
    classifier = state.get("head.bottleneck.3.weight")
    if classifier is None or classifier.shape[0] != 19:
        return None
    try:
        from ccnet.data.cityscapes import CITYSCAPES_INFO
    except ImportError:  # cityscapesscripts missing: names are optional
        return None
    return CITYSCAPES_INFO


def _cityscapes_names(state):
    info = _cityscapes_info(state)
    return None if info is None else tuple(info.class_names)


def _cityscapes_palette(state):
    info = _cityscapes_info(state)
    return None if info is None else tuple(tuple(c) for c in info.palette)


def convert_official_imagenet(state: dict[str, torch.Tensor], source: str) -> Converted:
    """The official training's deep-stem ImageNet ResNet (plain BatchNorm) -> `ResNet` keys."""
    from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

    converted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    dropped = [k for k in state if k.startswith("fc.")]
    return Converted(
        format="official_imagenet", kind="backbone", state=converted, origin={k: k for k in converted},
        dropped=dropped, arch=resnet_arch(state, source),
        backbone_kwargs=dict(stem="deep", stem_widths=_stem_widths(state), ceil_mode=True, dilation_schedule="full"),
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )
