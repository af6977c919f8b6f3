"""What several commands share: config and override parsing, loading a model for inference,
and turning an exception into the one-line message the user sees."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ccnet.errors import CheckpointError, InputError, MissingExtraError, PathError


def check_output(path: str | Path, want: Literal["folder", "file"], option: str = "--output") -> Path:
    """Refuse, before any work is done, an output path the command could not write: a file (or a
    path inside a file) where a folder is wanted, a folder where a file is wanted, a place that
    is not writable. One line naming the path and ``option``; returns the path."""
    path = Path(path)
    if want == "folder" and path.exists() and not path.is_dir():
        raise PathError(f"{option} {path}: is a file, not a folder; give a folder (created if missing)")
    if want == "file" and path.is_dir():
        raise PathError(f"{option} {path}: is a folder; give a file name")
    ancestor = path.absolute() if want == "folder" and path.exists() else path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise PathError(f"{option} {path}: {ancestor} is a file, so nothing can be written under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PathError(f"{option} {path}: {ancestor} is not writable")
    return path


def split_config_and_overrides(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first item is the config file unless it has an ``=``."""
    items = list(items)
    config = items.pop(0) if items and "=" not in items[0] else None
    for item in items:
        if "=" not in item:
            raise InputError(f"{item!r}: the config file must come first; overrides look like key.sub=value")
    return config, items


def config_from_items(items: Sequence[str]):
    """The `ccnet.config.Config` of ``[CONFIG] [key=value ...]``."""
    from ccnet.config import load_config

    path, overrides = split_config_and_overrides(items)
    return load_config(path, overrides)


def task_of(items: Sequence[str], checkpoint: str | None = None) -> str:
    """``segmentation`` or ``detection``: the config file's (and overrides') ``task``, else the one
    stored in the checkpoint, else the default."""
    from ccnet.config import load_config

    path, overrides = split_config_and_overrides(items)
    if path is None and checkpoint is not None and Path(checkpoint).is_file():
        try:  # memory-mapped: only the small config is read; a bad file is reported by the real loader
            from ccnet.files import load_torch_file

            loaded = load_torch_file(checkpoint, mmap=True)
            stored = loaded.get("config") if isinstance(loaded, dict) else None
        except Exception:
            stored = None
        task = stored.get("task", "segmentation") if isinstance(stored, dict) else "segmentation"
        overrides = [f"task={task}", *overrides]
    return load_config(path, overrides).task  # one of its allowed values, checked by load_config


def detection_cli():
    """`ccnet.detection.cli`, or a one-line error when the ``[detection]`` extra is missing."""
    try:
        from ccnet.detection import cli
    except ImportError as error:
        raise MissingExtraError(f"task 'detection' needs the detection extra (pip install 'ccnet-pytorch[detection]'): "
                                f"{error}") from None
    return cli


def model_from_checkpoint(path: str, items: Sequence[str]):
    """Model (eval mode), config and dataset info of a training checkpoint or a ccnet model
    folder (``save_pretrained``, ``ccnet convert``). A config given on the command line must
    describe the same model; overrides apply on top. A Mask R-CNN checkpoint is refused by name
    (``visualize-attention``, ``explore`` and ``export`` load through here)."""
    from ccnet.engine.build import build_model
    from ccnet.engine.checkpoint import check_compatible, checkpoint_config, load_checkpoint, load_checkpoint_weights

    if Path(path).is_dir():
        return model_from_folder(path, items)
    checkpoint = load_checkpoint(path)
    stored = checkpoint.get("config")
    if isinstance(stored, dict) and stored.get("task") == "detection":  # before its weights meet a CCNet
        raise CheckpointError(f"{path}: this is a Mask R-CNN checkpoint (task: detection); this command takes a "
                              f"segmentation model: use ccnet predict --checkpoint {path} (drawn detections) or ccnet "
                              f"evaluate --checkpoint {path} (COCOeval) for it")
    config, info = checkpoint_config(checkpoint, path, *split_config_and_overrides(items), check=check_compatible)
    model = build_model(config, info.num_classes)
    load_checkpoint_weights(model, checkpoint, path)
    return for_inference(model, config), config, info


def for_inference(model: torch.nn.Module, config: Any) -> torch.nn.Module:
    """Eval mode, in the memory format the config asks for (``eval.channels_last``)."""
    if config.eval.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def model_from_folder(path: str, items: Sequence[str]):
    """A saved ccnet model folder: its own model settings, and what it records for inference
    (``inference`` in its config.json: a video model's ``video.clip_length`` and
    ``video.attention``, unless given as overrides; the ``data.dataset`` it was trained on,
    unless the command line gives a config file or ``data.dataset``); other data and eval
    settings from the command line (defaults otherwise)."""
    from ccnet.config import load_config
    from ccnet.data.info import DatasetInfo
    from ccnet.interop import load_pretrained
    from ccnet.models import CCNet3D

    model = load_pretrained(path)
    config_path, overrides = split_config_and_overrides(items)
    given = {item.split("=", 1)[0].strip() for item in overrides}
    recorded = getattr(model, "inference", None) or {}
    defaults = []
    if config_path is None and "data.dataset" not in given and recorded.get("dataset"):
        defaults.append(f"data.dataset={recorded['dataset']}")
    if isinstance(model, CCNet3D):
        if "video.clip_length" not in given and recorded.get("clip_length"):
            defaults.append(f"video.clip_length={recorded['clip_length']}")
        if "video.attention" not in given:
            defaults.append(f"video.attention={'3d' if model.temporal else '2d'}")
    config = load_config(config_path, [*defaults, *overrides])
    if isinstance(model, CCNet3D):
        model.temporal = config.video.attention == "3d"  # the same weights either way
        model.config["temporal"] = model.temporal
    config.model.align_corners = model.align_corners
    if getattr(model, "mean", None) is not None:
        config.data.mean, config.data.std = list(model.mean), list(model.std)
    names = tuple(getattr(model, "class_names", None) or (f"class_{i}" for i in range(model.num_classes)))
    palette = getattr(model, "palette", None) or [((i * 67) % 256, (i * 131) % 256, (i * 199) % 256)
                                                  for i in range(model.num_classes)]
    info = DatasetInfo(Path(path).name, names, tuple(tuple(c) for c in palette))
    return for_inference(model, config), config, info


def one_line(error: BaseException) -> str:
    """The message of an error, even one re-raised by a DataLoader worker with a traceback inside."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    last = lines[-1]
    if len(lines) > 1 and ": " in last and last.split(": ", 1)[0].replace(".", "").isidentifier():
        last = last.split(": ", 1)[1]  # "ccnet.data.io.DatasetError: msg" -> "msg"
    return last
