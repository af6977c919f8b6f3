"""Reading foreign weight files safely, recognising their format, loading them with exact checks.

Formats (``format=`` arguments):

* ``"ccnet"``: our own folder (``model.safetensors`` + ``config.json``), see `ccnet.models.hub`.
* ``"official"``: a checkpoint of the official CCNet code (InPlace-ABN norms, ``head.*`` + ``dsn.*``).
* ``"mmseg"``: an mmsegmentation CCNet checkpoint (``{'meta', 'state_dict'}``, ``decode_head.*``);
  for `load_backbone` also an mmcv ResNetV1c backbone file (``stem.*``, ``layerN.*``).
* ``"torchvision"``: a torchvision ResNet state dict (7x7 stem), backbone only.
* ``"official_imagenet"``: the deep-stem ``resnet101-imagenet.pth`` the official training
  starts from (the CSAIL semantic-segmentation-pytorch ResNet), backbone only.

Every file is read with ``torch.load(weights_only=True)``: nothing in it can run code. Every
tensor of the file must land somewhere and every weight of the model must be filled, with the
right shape; otherwise `WeightsMismatchError` lists what does not fit, by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ccnet.errors import CheckpointError, InputError
from ccnet.files import UnsafeFileError, load_torch_file
from ccnet.interop.formats import Converted, resnet_arch
from ccnet.interop.mmseg import convert_mmseg
from ccnet.interop.official import convert_official, convert_official_imagenet
from ccnet.interop.torchvision import convert_torchvision
from ccnet.models.ccnet import CCNet
from ccnet.models.ccnet3d import CCNet3D
from ccnet.models.hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    from_pretrained,
    read_pretrained_config,
    resolve_pretrained,
    save_pretrained,
)
from ccnet.models.presets import create_model
from ccnet.models.resnet import build_resnet
from ccnet.models.state_dict import WeightsMismatchError, load_state_dict_checked

__all__ = [
    "FORMATS",
    "Converted",
    "WeightsFileError",
    "WeightsMismatchError",
    "convert",
    "detect_format",
    "init_backbone_from",
    "load_backbone",
    "load_pretrained",
    "load_state_dict_checked",
    "read_backbone",
    "read_weights",
    "resnet_arch",
]

FORMATS = ("ccnet", "official", "mmseg", "torchvision", "official_imagenet")
_SHOWN = 5  # key names shown per kind of mismatch


# A weight file that cannot be read safely (missing, truncated, corrupt, or pickled code), or
# that is not a state dict: the same error as every other file ccnet refuses to read.
WeightsFileError = UnsafeFileError


# --------------------------------------------------------------------------------------------
# Reading files


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(state_dict, meta)`` of a ``torch.save`` file, read with ``weights_only=True``.

    Unwraps ``{'state_dict': ..., 'meta': ...}`` (mmcv/mmengine) and strips a ``module.`` prefix
    (DataParallel). Errors name the file: missing, truncated/corrupt, or pickled objects other
    than tensors and plain containers (which could run code and are never unpickled).
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsFileError(f"{path}: is a folder but not a ccnet model folder (no config.json)")
    obj = load_torch_file(path, what="weight file")
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """State dict and meta of a loaded object (a plain state dict or an mmcv-style wrapper)."""
    meta = None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else None
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsFileError(f"{source}: holds no state dict (expected a mapping of names to tensors)")
    if "model" in obj and "config" in obj and not isinstance(obj["model"], torch.Tensor):
        raise WeightsFileError(f"{source}: a ccnet training checkpoint; export it with model.save_pretrained() "
                               f"(or `ccnet convert` on a saved model folder)")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsFileError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                                   f"not a state dict")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state, dict(meta) if meta is not None else None


# --------------------------------------------------------------------------------------------
# Recognising formats and architectures

def detect_format(state: Mapping[str, Any], source: str = "state dict") -> str:
    """The format of a state dict (``module.`` prefix already stripped), or a clear error."""
    keys = set(state)
    if any(k.startswith(("decode_head.", "auxiliary_head.")) for k in keys):
        return "mmseg"
    if any(k.startswith(("backbone.stem.", "stem.0.")) for k in keys):
        return "mmseg"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith(("head.", "aux_head.")) for k in keys):
        raise WeightsFileError(f"{source}: a bare ccnet state dict: it does not say which architecture it is; "
                               f"save models with model.save_pretrained(dir) and load the folder")
    if any(k.startswith(("head.conva.", "head.bottleneck.", "dsn.")) for k in keys):
        return "official"
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        if "conv2.weight" in keys and "conv3.weight" in keys:
            return "official_imagenet"
        if tuple(state["conv1.weight"].shape[-2:]) == (7, 7):
            return "torchvision"
    shown = ", ".join(sorted(keys)[:_SHOWN])
    raise WeightsFileError(f"{source}: unknown weight format (keys: {shown}, ...); known formats: "
                           f"{', '.join(FORMATS)}")


def _convert(state: dict[str, torch.Tensor], meta: dict[str, Any] | None, fmt: str, source: str) -> Converted:
    if fmt == "auto":
        fmt = detect_format(state, source)
    if fmt == "official":
        return convert_official(state, source)
    if fmt == "official_imagenet":
        return convert_official_imagenet(state, source)
    if fmt == "mmseg":
        return convert_mmseg(state, meta, source)
    if fmt == "torchvision":
        return convert_torchvision(state, source)
    if fmt == "ccnet":
        raise WeightsFileError(f"{source}: format 'ccnet' is a model folder (config.json + model.safetensors)")
    raise InputError(f"unknown format {fmt!r}; expected 'auto' or one of {', '.join(FORMATS)}")


def _check_format_name(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected 'auto' or one of {', '.join(FORMATS)}")


def _is_ccnet_dir(path: Path) -> Path | None:
    if path.is_dir() and (path / CONFIG_NAME).exists():
        return path
    if path.is_file() and path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).exists():
        return path.parent
    return None


def _read_source(src: str | Path | Mapping[str, Any], fmt: str,
                 revision: str | None = None) -> tuple[Converted | Path, str]:
    """A ccnet folder (returned as its path; a Hub repo id is downloaded) or a converted foreign
    state dict."""
    _check_format_name(fmt)
    if isinstance(src, (str, Path)):
        path = resolve_pretrained(src, revision)
        folder = _is_ccnet_dir(path) if fmt in ("auto", "ccnet") else None
        if folder is not None:
            return folder, str(folder)
        if fmt == "ccnet":
            raise WeightsFileError(f"{path}: not a ccnet model folder (needs config.json and model.safetensors)")
        state, meta = read_weights(path)
        source = str(path)
    elif isinstance(src, Mapping):
        source = "state dict"
        state, meta = unwrap_state_dict(src, source)
    else:
        raise TypeError(f"expected a path or a state dict, got {type(src).__name__}")
    return _convert(state, meta, fmt, source), source


# --------------------------------------------------------------------------------------------
# Loading with exact checks


def _attach_info(model: nn.Module, converted: Converted, source: str) -> None:
    from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

    model.class_names = converted.class_names
    model.palette = converted.palette
    model.mean = tuple(converted.mean or IMAGENET_MEAN)
    model.std = tuple(converted.std or IMAGENET_STD)
    model.pretrained_source = {"format": converted.format, "file": Path(source).name if source != "state dict"
                               else None, "arch": converted.arch}


def _check_num_classes(model_classes: int, num_classes: int | None, source: str, detail: str) -> int:
    if num_classes is not None and int(num_classes) != model_classes:
        raise WeightsMismatchError(source, note=f"the checkpoint has {model_classes} classes ({detail}) but "
                                                f"num_classes={num_classes} was asked for; drop num_classes, or "
                                                f"start from the backbone alone (init_backbone_from) to train "
                                                f"a new classifier")
    return model_classes


def load_pretrained(src: str | Path | Mapping[str, Any], format: str = "auto", num_classes: int | None = None,
                    architecture: str | None = None, revision: str | None = None, **overrides: Any):
    """A ready `ccnet.models.CCNet` (eval mode) from a checkpoint in any supported format.

    Args:
        src: a ccnet model folder, a weight file, an already loaded state dict, or a Hugging
            Face Hub repo id (``"org/name"``, a ccnet folder pushed with ``push_to_hub``; needs
            the ``hub`` extra) when no local path of that name exists.
        format: ``"auto"`` (recognised from the keys) or one of `FORMATS` with a full
            model (``"ccnet"``, ``"official"``, ``"mmseg"``).
        num_classes: optional check: an error if the checkpoint's classifier has another size.
        architecture: ``None`` for what the checkpoint holds; ``"CCNet3D"`` for the video model
            built from 2D weights (`CCNet3D.from_ccnet`), ``"CCNet"`` for the 2D model of
            a CCNet3D folder (the weights are the same).
        revision: the Hub revision (branch, tag or commit) of a repo id; default main.
        overrides: CCNet settings that do not change the weights (``recurrence=``, ``norm="syncbn"``).

    The model carries ``class_names``, ``palette`` (None when the file does not say),
    ``mean``/``std`` (the input normalisation the weights expect, 0..255 RGB) and
    ``pretrained_source``.
    """
    converted, source = _read_source(src, format, revision)
    if isinstance(converted, Path):
        if overrides:
            raise InputError(f"{converted}: a ccnet model folder is rebuilt from its own config; "
                             f"overrides {sorted(overrides)} are not applied")
        model = from_pretrained(converted, model_class_of(converted))
        _check_num_classes(model.num_classes, num_classes, source, "config.json")
        return as_architecture(model, architecture)
    if converted.kind != "model":
        raise WeightsMismatchError(source, note=f"a backbone-only checkpoint (format {converted.format!r}): use "
                                                f"load_backbone() or init_backbone_from()")
    classifier = converted.state.get("head.bottleneck.3.weight")
    if classifier is None:
        raise WeightsMismatchError(source, missing=[converted.source_name("head.bottleneck.3.weight")
                                                    if converted.source_name else "head.bottleneck.3.weight"],
                                   note="no classifier, so the number of classes is unknown")
    classes = _check_num_classes(int(classifier.shape[0]), num_classes, source,
                                 f"{converted.origin.get('head.bottleneck.3.weight')} is {list(classifier.shape)}")
    has_aux = any(k.startswith("aux_head.") for k in converted.state)
    kwargs = {"backbone": converted.arch, "aux": has_aux, **converted.preset_overrides, **overrides}
    model = create_model(converted.preset, classes, **kwargs)
    load_state_dict_checked(model, converted.state, source, origin=converted.origin, unmapped=converted.unmapped,
                            source_name=converted.source_name, target=f"{converted.preset} ({converted.arch})")
    model.eval()
    _attach_info(model, converted, source)
    return as_architecture(model, architecture)


def as_architecture(model: nn.Module, architecture: str | None) -> nn.Module:
    """``model`` as a `CCNet` or `CCNet3D` (same weights); None keeps it."""
    if architecture is None or architecture == type(model).__name__:
        return model
    if architecture == "CCNet3D" and type(model) is CCNet:
        return CCNet3D.from_ccnet(model)
    if architecture == "CCNet" and isinstance(model, CCNet3D):
        return model.to_ccnet()
    raise InputError(f"cannot turn a {type(model).__name__} into architecture {architecture!r}; "
                     f"choose one of {', '.join(MODEL_CLASSES)}")


def read_backbone(src: str | Path | Mapping[str, Any], format: str = "auto") -> tuple[Converted, str]:
    """The backbone weights of a checkpoint in any supported format, keyed as a torchvision-layout
    ResNet (``conv1.weight``, ``layer1.0.bn1.bias``, ...), and the source's name for messages.
    For code that loads them into a ResNet of its own (``ccnet.detection``)."""
    return _backbone_source(src, format)


# The model classes a ccnet folder can hold, by the "architecture" its config.json names.
MODEL_CLASSES: dict[str, type[nn.Module]] = {"CCNet": CCNet, "CCNet3D": CCNet3D}


def model_class_of(folder: Path) -> type[nn.Module]:
    """The class that rebuilds the ccnet model folder ``folder``."""
    architecture = read_pretrained_config(folder).get("architecture", "CCNet")
    if architecture not in MODEL_CLASSES:
        raise CheckpointError(f"{folder / CONFIG_NAME}: unknown architecture {architecture!r}; "
                              f"this ccnet knows {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[architecture]


def _backbone_source(src: str | Path | Mapping[str, Any], fmt: str) -> tuple[Converted, str]:
    converted, source = _read_source(src, fmt)
    if isinstance(converted, Path):
        config = read_pretrained_config(converted)["model"]
        model = from_pretrained(converted, model_class_of(converted))
        state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
        keys = ("stem", "stem_widths", "ceil_mode", "dilation_schedule", "multi_grid", "norm")
        backbone_kwargs = {"act": config.get("backbone_act", "relu"), **{k: config[k] for k in keys if k in config}}
        converted = Converted(format="ccnet", kind="model", state=state, arch=config.get("backbone", "resnet101"),
                              backbone_kwargs=backbone_kwargs, mean=model.mean, std=model.std)
    return converted.backbone_part(), source


def load_backbone(src: str | Path | Mapping[str, Any], format: str = "auto", arch: str | None = None,
                  output_stride: int = 8):
    """The ResNet backbone of a checkpoint, as ccnet's `ccnet.models.ResNet` (eval mode).

    The stem, max-pool ``ceil_mode`` and dilation schedule are those of the source: a torchvision
    file gives the standard stem, no ceil mode and torchvision's ``replace_stride_with_dilation``
    schedule (``"contract"``), so the stage outputs equal torchvision's own model at output
    stride 32 (plain) or 8/16 (dilated). ``arch`` (``"resnet50"``, ...) is recognised from the
    block counts; when given it must agree. Heads of full-model checkpoints are ignored, an
    ImageNet classifier (``fc.*``) is dropped. Calling the result returns the four stage outputs.
    """
    converted, source = _backbone_source(src, format)
    if arch is not None and arch != converted.arch:
        raise WeightsMismatchError(source, note=f"arch={arch!r} was asked for but the file holds a {converted.arch}")
    backbone = build_resnet(converted.arch, output_stride=output_stride, **converted.backbone_kwargs)
    load_state_dict_checked(backbone, converted.state, source, origin=converted.origin,
                            unmapped=converted.unmapped, source_name=converted.source_name,
                            target=f"a {converted.arch} backbone ({converted.backbone_kwargs.get('stem')} stem)")
    backbone.eval()
    backbone.mean = converted.mean
    backbone.std = converted.std
    return backbone


def init_backbone_from(model: nn.Module, src: str | Path | Mapping[str, Any], format: str = "auto") -> nn.Module:
    """Load ``model.backbone`` (of a CCNet) from ImageNet or segmentation weights, to start training.

    Only weights are copied: the model keeps its own dilations and max-pool mode. Every backbone
    weight must be provided with the right shape (so the stem type and widths must match the
    source); the file's classifier (``fc.*``) and heads are ignored. Returns ``model``.
    """
    if not isinstance(getattr(model, "backbone", None), nn.Module):
        raise TypeError(f"init_backbone_from needs a model with a .backbone, got {type(model).__name__}")
    converted, source = _backbone_source(src, format)
    load_state_dict_checked(model.backbone, converted.state, source, origin=converted.origin,
                            unmapped=converted.unmapped, source_name=converted.source_name,
                            target=f"the model's backbone (the file holds a {converted.arch}, format "
                                   f"{converted.format!r})")
    return model


def convert(src: str | Path | Mapping[str, Any], dst: str | Path, format: str = "auto",
            num_classes: int | None = None) -> Path:
    """Convert a checkpoint to a ccnet model folder (``model.safetensors`` + ``config.json``).

    Class names, palette and the input normalisation travel along. Returns ``dst``.
    """
    model = load_pretrained(src, format=format, num_classes=num_classes)
    return save_pretrained(model, dst)
