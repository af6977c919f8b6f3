"""Reading foreign weight files safely, recognising their format, loading them with exact checks.

Formats (``format=`` arguments):

* ``"ccnet"``: our own folder (``model.safetensors`` + ``config.json``), see :mod:`ccnet.models.hub`.
* ``"official"``: a checkpoint of the official CCNet code (InPlace-ABN norms, ``head.*`` + ``dsn.*``).
* ``"mmseg"``: an mmsegmentation CCNet checkpoint (``{'meta', 'state_dict'}``, ``decode_head.*``);
  for :func:`load_backbone` also an mmcv ResNetV1c backbone file (``stem.*``, ``layerN.*``).
* ``"torchvision"``: a torchvision ResNet state dict (7x7 stem), backbone only.
* ``"official_imagenet"``: the deep-stem ``resnet101-imagenet.pth`` the official training
  starts from (the CSAIL semantic-segmentation-pytorch ResNet), backbone only.

Every file is read with ``torch.load(weights_only=True)``: nothing in it can run code. Every
tensor of the file must land somewhere and every weight of the model must be filled, with the
right shape; otherwise :class:`WeightsMismatchError` lists what does not fit, by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
]

FORMATS = ("ccnet", "official", "mmseg", "torchvision", "official_imagenet")
_SHOWN = 5  # key names shown per kind of mismatch


class WeightsFileError(ValueError):
    """A weight file that cannot be read safely: missing, truncated, corrupt, or pickled code."""


class WeightsMismatchError(ValueError):
    """Weights that do not fit the model. ``missing``: model keys the file does not provide;
    ``unexpected``: file keys the model has no place for; ``shape_conflicts``: ``(name, file
    shape, model shape)``. Names are the file's own where they differ from the model's."""

    def __init__(self, source: str, *, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 shape_conflicts: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
                 target: str = "the model", note: str | None = None) -> None:
        self.source = source
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.shape_conflicts = list(shape_conflicts)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_names(self.unexpected)})")
        if self.shape_conflicts:
            shown = ", ".join(f"{name}: file {list(a)} vs model {list(b)}"
                              for name, a, b in self.shape_conflicts[:_SHOWN])
            more = f", ... {len(self.shape_conflicts) - _SHOWN} more" if len(self.shape_conflicts) > _SHOWN else ""
            parts.append(f"{len(self.shape_conflicts)} shape conflicts ({shown}{more})")
        message = f"{source}: weights do not fit {target}: " + "; ".join(parts) if parts else f"{source}: {note}"
        if parts and note:
            message += f". {note}"
        super().__init__(message)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


@dataclass
class Converted:
    """A foreign state dict renamed (and, where needed, transformed) into ccnet's key names.

    ``state`` uses CCNet keys (``backbone.*``, ``head.*``, ``aux_head.*``) for ``kind="model"``
    and ResNet keys (``conv1.weight``, ``layer1.0.bn1.bias``, ...) for ``kind="backbone"``.
    ``origin`` maps each ccnet key back to the file's key, ``unmapped`` lists file keys with no
    ccnet counterpart (reported as unexpected), ``dropped`` file keys deliberately not used
    (an ImageNet classifier, loss-function buffers). ``source_name`` gives a model key's name in
    the file's convention, for reporting missing keys.
    """

    format: str
    kind: str  # "model" or "backbone"
    state: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    source_name: Callable[[str], str] | None = None
    arch: str | None = None  # resnet name, from the block counts
    preset: str | None = None  # CCNet preset (kind="model")
    preset_overrides: dict[str, Any] = field(default_factory=dict)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # ResNet settings of the source
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def backbone_part(self) -> Converted:
        """The backbone of a full-model conversion, keyed as a :class:`ResNet`; the heads are left out."""
        if self.kind == "backbone":
            return self
        prefix = "backbone."
        state = {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}
        origin = {k[len(prefix):]: self.origin.get(k, k) for k in self.state if k.startswith(prefix)}
        source_name = self.source_name
        return Converted(
            format=self.format, kind="backbone", state=state, origin=origin,
            unmapped=[k for k in self.unmapped if not _is_head_key(k)], dropped=self.dropped,
            source_name=(lambda key: source_name(prefix + key)) if source_name else None,
            arch=self.arch, backbone_kwargs=self.backbone_kwargs, mean=self.mean, std=self.std,
        )


def _is_head_key(key: str) -> bool:
    return key.startswith(("head.", "dsn.", "decode_head.", "auxiliary_head.", "aux_head."))


# --------------------------------------------------------------------------------------------
# Reading files


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(state_dict, meta)`` of a ``torch.save`` file, read with ``weights_only=True``.

    Unwraps ``{'state_dict': ..., 'meta': ...}`` (mmcv/mmengine) and strips a ``module.`` prefix
    (DataParallel). Errors name the file: missing, truncated/corrupt, or pickled objects other
    than tensors and plain containers (which could run code and are never unpickled).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise WeightsFileError(f"{path}: is a folder but not a ccnet model folder (no config.json)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every failure becomes one clear message
        text = str(error)
        if "Weights only load failed" in text or "Unpickl" in type(error).__name__:
            globals_ = re.findall(r"GLOBAL ([\w.]+)", text)
            detail = f" (it refers to {globals_[0]})" if globals_ else ""
            raise WeightsFileError(
                f"{path}: cannot be read safely: it is truncated or corrupt, or it holds Python objects "
                f"other than tensors and plain containers{detail}, which could run code when unpickled; "
                f"it was not loaded"
            ) from None
        raise WeightsFileError(f"{path}: not a readable PyTorch weight file (truncated or corrupt?): "
                               f"{_first_line(error)}") from None
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

_BLOCK_COUNTS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


def resnet_arch(keys: Iterable[str], source: str, prefix: str = "") -> str:
    """ResNet name from the block counts of ``{prefix}layerN.i.*`` keys."""
    keys = list(keys)
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^{re.escape(prefix)}layer{stage}\.(\d+)\.")
        indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
        counts.append(max(indices) + 1 if indices else 0)
    block = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in keys else "basic"
    arch = _BLOCK_COUNTS.get((block, tuple(counts)))
    if arch is None:
        raise WeightsMismatchError(source, note=f"not a known ResNet: {block} blocks {counts} in "
                                                f"{prefix}layer1..4 (known: ResNet-18/34/50/101/152)")
    return arch


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
        from ccnet.interop.official import convert_official

        return convert_official(state, source)
    if fmt == "official_imagenet":
        from ccnet.interop.official import convert_official_imagenet

        return convert_official_imagenet(state, source)
    if fmt == "mmseg":
        from ccnet.interop.mmseg import convert_mmseg

        return convert_mmseg(state, meta, source)
    if fmt == "torchvision":
        from ccnet.interop.torchvision import convert_torchvision

        return convert_torchvision(state, source)
    if fmt == "ccnet":
        raise WeightsFileError(f"{source}: format 'ccnet' is a model folder (config.json + model.safetensors)")
    raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {', '.join(FORMATS)}")


def _check_format_name(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {', '.join(FORMATS)}")


def _is_ccnet_dir(path: Path) -> Path | None:
    from ccnet.models.hub import CONFIG_NAME, WEIGHTS_NAME

    if path.is_dir() and (path / CONFIG_NAME).exists():
        return path
    if path.is_file() and path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).exists():
        return path.parent
    return None


def _read_source(src: str | Path | Mapping[str, Any], fmt: str) -> tuple[Converted | Path, str]:
    """A ccnet folder (returned as its path) or a converted foreign state dict."""
    _check_format_name(fmt)
    if isinstance(src, (str, Path)):
        path = Path(src)
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


def load_state_dict_checked(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *,
                            origin: Mapping[str, str] | None = None, unmapped: Iterable[str] = (),
                            source_name: Callable[[str], str] | None = None,
                            target: str | None = None, optional: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(state, strict=True)`` with a precise report instead of a wall of text.

    BatchNorm ``num_batches_tracked`` counters absent from ``state`` (InPlace-ABN and older files
    have none) keep the module's value, and counters the module has no place for (frozen norms)
    are dropped. Module keys starting with one of ``optional`` (layers the source cannot have,
    such as a context block added to a pretrained network) keep their values when absent. Raises
    :class:`WeightsMismatchError` on any missing, unexpected or wrongly shaped tensor, naming them
    the way the file does.
    """
    origin = origin or {}
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("num_batches_tracked")}

    def file_name(key: str) -> str:
        return origin.get(key, key)

    def wanted_name(key: str) -> str:
        name = source_name(key) if source_name else key
        return name if name == key else f"{name} (model: {key})"

    missing = [wanted_name(k) for k in expected
               if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(optional)]
    unexpected = list(unmapped) + [file_name(k) for k in state if k not in expected]
    conflicts = [(file_name(k), tuple(v.shape), tuple(expected[k].shape))
                 for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or conflicts:
        raise WeightsMismatchError(source, missing=missing, unexpected=unexpected, shape_conflicts=conflicts,
                                   target=target or f"this {type(module).__name__}")
    full = dict(state)
    for key, value in expected.items():
        full.setdefault(key, value)
    module.load_state_dict(full, strict=True)


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
                    **overrides: Any):
    """A ready :class:`~ccnet.models.CCNet` (eval mode) from a checkpoint in any supported format.

    Args:
        src: a ccnet model folder, a weight file, or an already loaded state dict.
        format: ``"auto"`` (recognised from the keys) or one of :data:`FORMATS` with a full
            model (``"ccnet"``, ``"official"``, ``"mmseg"``).
        num_classes: optional check: an error if the checkpoint's classifier has another size.
        overrides: CCNet settings that do not change the weights (``recurrence=``, ``norm="syncbn"``).

    The model carries ``class_names``, ``palette`` (None when the file does not say),
    ``mean``/``std`` (the input normalisation the weights expect, 0..255 RGB) and
    ``pretrained_source``.
    """
    from ccnet.models.presets import create_model

    converted, source = _read_source(src, format)
    if isinstance(converted, Path):
        from ccnet.models.hub import from_pretrained

        if overrides:
            raise ValueError(f"{converted}: a ccnet model folder is rebuilt from its own config; "
                             f"overrides {sorted(overrides)} are not applied")
        model = from_pretrained(converted)
        _check_num_classes(model.num_classes, num_classes, source, "config.json")
        return model
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
    return model


def read_backbone(src: str | Path | Mapping[str, Any], format: str = "auto") -> tuple[Converted, str]:
    """The backbone weights of a checkpoint in any supported format, keyed as a torchvision-layout
    ResNet (``conv1.weight``, ``layer1.0.bn1.bias``, ...), and the source's name for messages.
    For code that loads them into a ResNet of its own (``ccnet.detection``)."""
    return _backbone_source(src, format)


def _backbone_source(src: str | Path | Mapping[str, Any], fmt: str) -> tuple[Converted, str]:
    converted, source = _read_source(src, fmt)
    if isinstance(converted, Path):
        from ccnet.models.hub import from_pretrained, read_pretrained_config

        config = read_pretrained_config(converted)["model"]
        model = from_pretrained(converted)
        state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
        keys = ("stem", "stem_widths", "ceil_mode", "dilation_schedule", "multi_grid", "norm")
        backbone_kwargs = {"act": config.get("backbone_act", "relu"), **{k: config[k] for k in keys if k in config}}
        converted = Converted(format="ccnet", kind="model", state=state, arch=config.get("backbone", "resnet101"),
                              backbone_kwargs=backbone_kwargs, mean=model.mean, std=model.std)
    return converted.backbone_part(), source


def load_backbone(src: str | Path | Mapping[str, Any], format: str = "auto", arch: str | None = None,
                  output_stride: int = 8):
    """The ResNet backbone of a checkpoint, as ccnet's :class:`~ccnet.models.ResNet` (eval mode).

    The stem, max-pool ``ceil_mode`` and dilation schedule are those of the source: a torchvision
    file gives the standard stem, no ceil mode and torchvision's ``replace_stride_with_dilation``
    schedule (``"contract"``), so the stage outputs equal torchvision's own model at output
    stride 32 (plain) or 8/16 (dilated). ``arch`` (``"resnet50"``, ...) is recognised from the
    block counts; when given it must agree. Heads of full-model checkpoints are ignored, an
    ImageNet classifier (``fc.*``) is dropped. Calling the result returns the four stage outputs.
    """
    from ccnet.models.resnet import build_resnet

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
    from ccnet.models.hub import save_pretrained

    model = load_pretrained(src, format=format, num_classes=num_classes)
    return save_pretrained(model, dst)
