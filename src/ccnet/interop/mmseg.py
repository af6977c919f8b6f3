"""mmsegmentation CCNet checkpoints (``ccnet_r50-d8`` / ``ccnet_r101-d8``, Cityscapes, ADE20K, VOC).

A file is ``{'meta': ..., 'state_dict': ...}``; the released 2020 files and mmsegmentation 1.x
use the same key names. The model is ResNetV1c (deep stem 32-32-64, no ceil mode, contract
dilation) + ``CCHead`` (an FCN head with two convs around the criss-cross attention and a
``conv_cat`` on the concatenated input) + an FCN auxiliary head on stage 3, i.e. the
``ccnet_mmseg_r50_d8`` / ``ccnet_mmseg_r101_d8`` presets after renaming:

==========================================  ==========================
mmsegmentation                              ccnet
==========================================  ==========================
backbone.stem.{0,1,3,4,6,7}                 backbone.{conv1,bn1,conv2,bn2,conv3,bn3}
backbone.layerN.*                           backbone.layerN.*
decode_head.convs.0.{conv,bn}               head.conva.{0,1}
decode_head.cca.{query,key,value}_conv      head.cca.{query,key,value}_conv
decode_head.cca.gamma.scale (0-dim)         head.cca.gamma (shape [1])
decode_head.convs.1.{conv,bn}               head.convb.{0,1}
decode_head.conv_cat.{conv,bn}              head.bottleneck.{0,1}
decode_head.conv_seg                        head.bottleneck.3
auxiliary_head.convs.0.{conv,bn}            aux_head.{0,1}
auxiliary_head.conv_seg                     aux_head.3
==========================================  ==========================

Class names and palette come from ``meta['CLASSES']``/``meta['PALETTE']`` (mmseg 0.x) or
``meta['dataset_meta']['classes'/'palette']`` (1.x). Normalisation: ImageNet mean/std, RGB.
For `ccnet.interop.load_backbone`, mmcv's ResNetV1c ImageNet files (``stem.*``,
``layerN.*``, no prefix) are read too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ccnet.interop.formats import Converted, resnet_arch

__all__ = ["ccnet_to_mmseg_key", "convert_mmseg", "mmseg_to_ccnet_key"]

_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
_PREFIXES = (  # (mmseg prefix, ccnet prefix); the first match wins
    ("decode_head.convs.0.conv.", "head.conva.0."),
    ("decode_head.convs.0.bn.", "head.conva.1."),
    ("decode_head.convs.1.conv.", "head.convb.0."),
    ("decode_head.convs.1.bn.", "head.convb.1."),
    ("decode_head.cca.query_conv.", "head.cca.query_conv."),
    ("decode_head.cca.key_conv.", "head.cca.key_conv."),
    ("decode_head.cca.value_conv.", "head.cca.value_conv."),
    ("decode_head.conv_cat.conv.", "head.bottleneck.0."),
    ("decode_head.conv_cat.bn.", "head.bottleneck.1."),
    ("decode_head.conv_seg.", "head.bottleneck.3."),
    ("auxiliary_head.convs.0.conv.", "aux_head.0."),
    ("auxiliary_head.convs.0.bn.", "aux_head.1."),
    ("auxiliary_head.conv_seg.", "aux_head.3."),
)
_GAMMA_KEYS = ("decode_head.cca.gamma.scale", "decode_head.cca.gamma")
_NORM_KEYS = ("data_preprocessor.mean", "data_preprocessor.std")


def mmseg_to_ccnet_key(key: str) -> str | None:
    """The ccnet key of an mmseg key (``backbone.`` optional for backbone keys), None if unknown."""
    if key in _GAMMA_KEYS:
        return "head.cca.gamma"
    for theirs, ours in _PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    rest = key[len("backbone."):] if key.startswith("backbone.") else key
    if rest.startswith("stem."):
        index, _, leaf = rest[len("stem."):].partition(".")
        return f"backbone.{_STEM[index]}.{leaf}" if index in _STEM and leaf else None
    if rest.startswith(("layer1.", "layer2.", "layer3.", "layer4.")):
        return "backbone." + rest
    return None


def ccnet_to_mmseg_key(key: str) -> str:
    """The mmseg name of a ccnet key (for error messages)."""
    if key == "head.cca.gamma":
        return "decode_head.cca.gamma.scale"
    for theirs, ours in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if key.startswith("backbone."):
        rest = key[len("backbone."):]
        module, _, leaf = rest.partition(".")
        for index, name in _STEM.items():
            if module == name:
                return f"backbone.stem.{index}.{leaf}"
        return key
    return key


def _labels(meta: Mapping[str, Any] | None, num_classes: int, source: str):
    if not meta:
        return None, None
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    names = meta.get("CLASSES", dataset_meta.get("classes"))
    palette = meta.get("PALETTE", dataset_meta.get("palette"))
    if names is not None:
        names = tuple(str(n) for n in names)
        if len(names) != num_classes:
            warnings.warn(f"{source}: meta lists {len(names)} class names for {num_classes} classes; names ignored",
                          stacklevel=3)
            names = None
    if palette is not None:
        try:
            palette = tuple(tuple(int(c) for c in colour) for colour in palette)
        except (TypeError, ValueError):
            palette = ()
        if len(palette) != num_classes or any(len(c) != 3 for c in palette):
            warnings.warn(f"{source}: meta palette does not give one RGB colour per class; palette ignored",
                          stacklevel=3)
            palette = None
    return names, palette


def _norm_from_state(state: Mapping[str, torch.Tensor]) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    mean, std = state.get("data_preprocessor.mean"), state.get("data_preprocessor.std")
    if mean is None or std is None or mean.numel() != 3 or std.numel() != 3:
        return None, None
    return tuple(float(v) for v in mean.flatten()), tuple(float(v) for v in std.flatten())


def convert_mmseg(state: dict[str, torch.Tensor], meta: Mapping[str, Any] | None, source: str) -> Converted:
    """mmseg CCNet (or ResNetV1c backbone) state dict -> ccnet keys."""
    from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unmapped = []
    dropped = [k for k in state if k in _NORM_KEYS]
    for key, value in state.items():
        if key in _NORM_KEYS:
            continue
        new = mmseg_to_ccnet_key(key)
        if new is None:
            unmapped.append(key)
            continue
        if new in converted:  # gamma given twice (gamma and gamma.scale)
            unmapped.append(key)
            continue
        if new == "head.cca.gamma" and value.dim() == 0:
            value = value.reshape(1)
        converted[new] = value
        origin[new] = key
    arch = resnet_arch(converted, source, prefix="backbone.")
    widths = [int(converted[f"backbone.conv{i}.weight"].shape[0]) if f"backbone.conv{i}.weight" in converted
              else default for i, default in zip((1, 2, 3), (32, 32, 64), strict=True)]
    backbone_kwargs = dict(stem="deep", stem_widths=widths, ceil_mode=False, dilation_schedule="contract")
    mean, std = _norm_from_state(state)
    is_model = any(k.startswith(("head.", "aux_head.")) for k in converted)
    preset = "ccnet_mmseg_r101_d8" if arch == "resnet101" else "ccnet_mmseg_r50_d8"  # backbone=arch is passed too
    prefixed = any(k.startswith("backbone.") for k in state)

    def backbone_name(key: str) -> str:
        name = ccnet_to_mmseg_key("backbone." + key)
        return name if prefixed else name[len("backbone."):]

    classifier = converted.get("head.bottleneck.3.weight")
    names, palette = _labels(meta, int(classifier.shape[0]), source) if classifier is not None else (None, None)
    return Converted(
        format="mmseg", kind="model" if is_model else "backbone",
        state=converted if is_model else {k[len("backbone."):]: v for k, v in converted.items()},
        origin=origin if is_model else {k[len("backbone."):]: v for k, v in origin.items()},
        unmapped=unmapped, dropped=dropped,
        source_name=ccnet_to_mmseg_key if is_model else backbone_name,
        arch=arch, preset=preset,
        backbone_kwargs=backbone_kwargs, class_names=names, palette=palette,
        mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD,
    )
