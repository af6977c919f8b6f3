"""Typed training/evaluation configuration: YAML files plus ``key.sub=value`` overrides.

The defaults are the embedded main job (CCNet on the built-in synthetic dataset, CPU-sized);
``configs/*.yaml`` reproduce published settings. Unknown keys and wrong types are rejected with
a message naming the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD
from ccnet.errors import ConfigError


class _YamlLoader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false, so ``amp=off`` stays the string "off"
    (PyYAML's default, YAML 1.1, also reads yes/no/on/off as booleans)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(text: str) -> Any:
    """Parse YAML as configs are read (safe; YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_YamlLoader)


@dataclass
class ModelConfig:
    """Arguments of `ccnet.models.CCNet` (``num_classes`` comes from the dataset).

    The defaults are the CPU-sized model of the embedded default job; the published configs
    under ``configs/`` set every key of this section explicitly.
    """

    backbone: str = "resnet18"
    recurrence: int = field(default=2, metadata={"min": 0})
    output_stride: int = 16  # the CPU job: 12x12 features at 192x192 (published configs: 8)
    stem: str = "deep"
    stem_widths: list[int] = field(default_factory=lambda: [32, 32, 64])
    ceil_mode: bool = True
    dilation_schedule: str = "full"
    multi_grid: list[int] | None = None
    norm: Literal["bn", "syncbn", "gn", "frozenbn"] = "bn"  # "bn" becomes SyncBatchNorm under multi-process training
    backbone_act: str = "relu"
    head_act: str = "leaky_relu"
    head_channels: int = 64
    reduction: int = 8
    dropout: float = 0.1
    aux: bool = False
    aux_channels: int = 64
    aux_bias: bool = True
    embedding_channels: int = 16
    align_corners: bool = True
    # The attention's residual weight at step 0: 0 in the paper (and in every published config);
    # the 5-minute CPU job starts at 1 so the attention path learns from the first step.
    gamma_init: float = 1.0
    # The head's context module (the paper's ablation, same place on the same backbone): rcca
    # (CCNet), nonlocal, ppm (PSPNet pyramid pooling), aspp (DeepLabv3) or none (FCN baseline).
    context: Literal["rcca", "nonlocal", "ppm", "aspp", "none"] = "rcca"
    ppm_bins: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    aspp_rates: list[int] = field(default_factory=lambda: [12, 24, 36])  # in feature cells (DeepLabv3 at OS 8)


@dataclass
class DataConfig:
    # cityscapes, ade20k, lip, camvid, voc, folder, synthetic; clips (CCNet3D): camvid_video, synthetic_video
    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    crop_size: list[int] = field(default_factory=lambda: [96, 96])  # (h, w) training crop
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    flip: bool = True
    photometric: bool = True
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    batch_size: int = 8  # per process
    workers: int = 1
    max_val_samples: int | None = None  # evaluate on the first N validation samples only
    synthetic_size: list[int] = field(default_factory=lambda: [192, 192])  # (h, w) of synthetic scenes
    synthetic_val_samples: int = 64
    # Probability that a synthetic scene has a grey object on the key's rows or columns (one
    # criss-cross hop from the key); the other grey objects share no row or column with it.
    synthetic_aligned_prob: float = 0.5
    # one_key: every grey object takes the colour of the scene's key; two_keys: two keys, each grey
    # object takes the colour of the key whose frame matches its tint (ccnet.data.synthetic_two_keys);
    # columns: three keys of all three colours along one edge, each grey object under one key's
    # columns takes its colour (ccnet.data.synthetic_columns).
    synthetic_task: Literal["one_key", "two_keys", "columns"] = "one_key"


@dataclass
class LossConfig:
    aux_weight: float = 0.4
    ohem: bool = False
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000
    consistency: bool = False  # TPAMI category consistent loss (adds the embedding branch)
    consistency_delta_v: float = 0.5
    consistency_delta_d: float = 1.5
    consistency_alpha: float = 1.0
    consistency_beta: float = 1.0
    consistency_gamma: float = 0.001
    consistency_variant: str = "piecewise"
    # Linear warm-up of the consistency loss's weight: iteration i of the first N weighs it i / N
    # (0: full weight from the start).
    consistency_warmup_iters: int = field(default=0, metadata={"min": 0})


@dataclass
class OptimConfig:
    lr: float = field(default=0.05, metadata={"min_exclusive": 0.0})
    momentum: float = 0.9
    weight_decay: float = 1e-4
    power: float = 0.9  # poly decay: lr * (1 - it / iterations) ** power
    iterations: int = 500
    warmup_iters: int = 0
    warmup_ratio: float = 0.1  # lr factor at iteration 0 of the linear warm-up
    min_lr: float = 0.0
    # LR multiplier of everything outside the backbone (RCCA head, auxiliary head): 1 in the
    # published configs (they set it); the 5-minute CPU job uses 10 so the attention learns in time.
    head_lr_mult: float = 10.0
    # Clip the global gradient norm to this value (null: no clipping, as in the published configs;
    # the CPU job clips at 1: without it a loss spike mid-run can stop the attention from learning).
    clip_grad_norm: float | None = 1.0
    # "poly" (segmentation) or "step": lr * step_factor ** (number of ``steps`` passed), the
    # Detectron schedule of the Mask R-CNN configs (warm-up applies to both).
    schedule: Literal["poly", "step"] = "poly"
    steps: list[int] = field(default_factory=list)
    step_factor: float = 0.1


@dataclass
class EvalConfig:
    mode: Literal["whole", "slide"] = "whole"
    crop_size: list[int] | None = None  # slide: tile (h, w)
    stride: list[int] | None = None  # slide: tile stride (h, w)
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    interval: int = 0  # evaluate every N iterations during training (0: only at the end)
    # ccnet evaluate / predict run the model channels-last (the speed-up is measured with
    # `ccnet bench model`, see README). Training follows the top-level channels_last.
    channels_last: bool = True


# Datasets of clips: training and evaluation on them use the video model, CCNet3D.
VIDEO_DATASETS = ("camvid_video", "synthetic_video")


@dataclass
class VideoConfig:
    """Clips, for the video datasets (``data.dataset`` in `VIDEO_DATASETS`; the model is
    then `ccnet.models.CCNet3D` with the ``model`` settings)."""

    clip_length: int = field(default=5, metadata={"min": 1})  # T frames per clip (the TPAMI CamVid setting)
    clip_stride: int = 1  # training clips start every N annotated frames (1..clip_length)
    eval_clip_stride: int | None = None  # evaluation clips (null: clip_length, each frame processed once)
    # 3d: attention across the clip (CCNet3D); 2d: within each frame only, the same network run
    # frame by frame (the baseline). The weights are the same either way.
    attention: Literal["3d", "2d"] = "3d"
    # camvid_video: a folder of all extracted video frames (<sequence>/<frame number>.png): clips of
    # clip_length raw frames around each annotated frame instead of consecutive annotated frames.
    frames_root: str | None = None


@dataclass
class DetectionConfig:
    """Mask R-CNN with a context block in its ResNet-FPN backbone (``task: detection``; the code is
    `ccnet.detection`, which needs the ``[detection]`` extra: torchvision and pycocotools).

    The block sits right before the last residual block of ``layer3`` (res4), where the non-local
    paper puts its block; data come from ``data.root`` in the COCO layout
    (``annotations/instances_<split>.json`` + ``<split>/`` images).
    """

    backbone: str = "resnet50"  # a torchvision ResNet: resnet18/34/50/101/152
    context: Literal["rcca", "nonlocal", "none"] = "rcca"
    recurrence: int = 2  # criss-cross loops (shared weights) of the rcca block
    reduction: int = 8  # query/key channels = layer3 channels // reduction (rcca and nonlocal)
    gamma_init: float = 0.0  # the block's residual weight at the start (0: identity)
    # frozen_bn (Detectron, with ImageNet weights) | bn | gn (from scratch)
    norm: Literal["frozen_bn", "bn", "gn"] = "frozen_bn"
    trainable_layers: int = 3  # ResNet stages trained, counted from layer4 (5: all, with the stem)
    min_size: list[int] = field(default_factory=lambda: [800])  # shorter side; several: one drawn per image
    max_size: int = 1333
    # Head widths (standard: 256 / 1024 / 256); narrower heads make CPU-sized experiments possible.
    fpn_channels: int = 256
    box_head_channels: int = 1024
    mask_head_channels: int = 256
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    detections_per_image: int = 100
    score_thresh: float = 0.05  # detections kept for evaluation
    draw_score_thresh: float = 0.5  # detections drawn by ccnet predict
    # A torchvision Mask R-CNN state dict to start from (the block, absent there, keeps its init).
    pretrained: str | None = None


@dataclass
class Config:
    # The run's name (banner, default run folder); null: named after the dataset (a folder
    # dataset after its root folder).
    name: str | None = None
    # segmentation (CCNet) | detection (Mask R-CNN, the detection section)
    task: Literal["segmentation", "detection"] = "segmentation"
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto (float16 on CUDA, off on CPU) | off | bf16 | fp16
    channels_last: bool = False  # train channels-last (on CPU a CCNet-R101 step is ~5% slower so)
    # ImageNet (torchvision or deep-stem) or segmentation weights to start the backbone from;
    # see ccnet.interop.init_backbone_from. Datasets and weights are never downloaded.
    pretrained_backbone: str | None = None
    log_interval: int = 20
    checkpoint_interval: int = 200
    num_visualizations: int = 4
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def is_video(self) -> bool:
        """True for a dataset of clips: the model is CCNet3D."""
        return self.data.dataset in VIDEO_DATASETS

    def run_name(self) -> str:
        """``name``, or what is trained: the dataset (a folder dataset: its root folder's name)."""
        if self.name:
            return self.name
        if self.data.dataset == "folder" and self.data.root:
            return Path(self.data.root).resolve().name or "folder"
        return self.data.dataset


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and isinstance(value, str):
            return value
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _apply(target: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} is a section; expected a mapping, got {value!r}")
            _apply(current, value, prefix=f"{key}.")
        else:
            setattr(target, name, _coerce(value, hints[name], key))


def _check_bounds(target: Any, prefix: str = "") -> None:
    """Check every numeric field against its ``min`` / ``min_exclusive`` metadata (one place)."""
    for f in dataclasses.fields(target):
        value = getattr(target, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_bounds(value, f"{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if "min" in f.metadata and value < f.metadata["min"]:
                low = f.metadata["min"]
                raise ConfigError(f"{key}: {value!r} is below the minimum (allowed: >= {low!r})")
            if "min_exclusive" in f.metadata and value <= f.metadata["min_exclusive"]:
                low = f.metadata["min_exclusive"]
                raise ConfigError(f"{key}: {value!r} is not allowed (allowed: > {low!r})")


def _parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {key!r}: cannot parse value {raw!r}: {error}") from None
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``key.sub=value`` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            _apply(config, migrate_keys(values, str(path)))
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``key.sub=value`` overrides to ``config`` in place (and return it)."""
    for override in overrides:
        _apply(config, _parse_override(override))
    _check_bounds(config)
    return config


# Config keys renamed or removed since configs were first stored in checkpoints and model folders:
# ``"old.key": "new.key"``, or ``"old.key": None`` when the setting is gone. Stored configs and
# config files are read strictly, so without an entry here a rename would make every existing
# checkpoint fail evaluate, predict and --resume. `migrate_keys` applies it, with a warning.
RENAMED_KEYS: dict[str, str | None] = {}


def migrate_keys(values: dict[str, Any], source: str = "stored config") -> dict[str, Any]:
    """``values`` (nested, as `Config.to_dict` writes them) with `RENAMED_KEYS` applied: a renamed
    key's value moves to its new key (unless that is set too), a removed key is dropped; each
    one is named in a warning. ``values`` itself is not changed."""
    migrated = _copy_sections(values)
    for old, new in RENAMED_KEYS.items():
        found, value = _pop_key(migrated, old)
        if not found:
            continue
        if new is None:
            warnings.warn(f"{source}: config key {old!r} no longer exists; its value {value!r} is ignored",
                          UserWarning, stacklevel=2)
            continue
        warnings.warn(f"{source}: config key {old!r} is now {new!r}; read as {new}={value!r}",
                      UserWarning, stacklevel=2)
        section, name = _section_of(migrated, new)
        section.setdefault(name, value)
    return migrated


def _copy_sections(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_sections(v) if isinstance(v, dict) else v for k, v in values.items()}


def _pop_key(values: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    *sections, name = dotted.split(".")
    for section in sections:
        values = values.get(section)  # type: ignore[assignment]
        if not isinstance(values, dict):
            return False, None
    if name not in values:
        return False, None
    return True, values.pop(name)


def _section_of(values: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    *sections, name = dotted.split(".")
    for section in sections:
        values = values.setdefault(section, {})
    return values, name


def config_from_dict(values: dict[str, Any], source: str = "stored config") -> Config:
    """Rebuild a `Config` from `Config.to_dict` output (e.g. stored in a checkpoint), its keys
    first migrated (`migrate_keys`)."""
    config = Config()
    _apply(config, migrate_keys(values, source))
    _check_bounds(config)
    return config


def flatten_keys(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: a config's keys as written on the command line."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
