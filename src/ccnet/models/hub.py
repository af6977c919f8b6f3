"""ccnet's own model format: a folder with ``model.safetensors`` and ``config.json``.

``config.json`` holds everything needed to rebuild the model and use it::

    {
      "format": "ccnet", "format_version": 1, "ccnet_version": "0.1.0",
      "model": {...},                 # CCNet constructor arguments (model.config)
      "id2label": {"0": "road", ...}, # or null
      "palette": [[128, 64, 128], ...],  # or null
      "mean": [...], "std": [...],    # input normalisation, 0..255 pixel units, RGB order
      "source": {...},                # optional: what the weights were converted from
      "inference": {...}              # optional, written by ccnet train: "dataset" trained on; video
                                      # models also "clip_length" (frames per clip) and "attention"
    }

The weights are a safetensors file (no pickle: loading it cannot run code). Both files are
written into a temporary folder next to the target, which is then renamed into place, so a
crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD
from ccnet.errors import CheckpointError, InputError, RunFolderError, UnsafeFileError, UserFileNotFoundError
from ccnet.files import atomic_directory
from ccnet.models import hf_hub
from ccnet.models.model_card import CARD_NAME, model_card
from ccnet.models.state_dict import load_state_dict_checked
from ccnet.version import __version__

ModelT = TypeVar("ModelT", bound="PretrainedMixin")

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "PretrainedMixin",
    "from_pretrained",
    "is_pretrained_dir",
    "push_folder_to_hub",
    "read_pretrained_config",
    "read_run_metrics",
    "resolve_pretrained",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_OWN_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME})


def is_pretrained_dir(path: str | Path) -> bool:
    """True for a folder holding a ccnet ``config.json`` (the weights are checked on loading)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def _check_labels(num_classes: int, class_names: Sequence[str] | None,
                  palette: Sequence[Sequence[int]] | None) -> tuple[list[str] | None, list[list[int]] | None]:
    names = None
    if class_names is not None:
        names = [str(name) for name in class_names]
        if len(names) != num_classes:
            raise InputError(f"{len(names)} class names for a model with {num_classes} classes")
    colours = None
    if palette is not None:
        colours = [[int(c) for c in colour] for colour in palette]
        if len(colours) != num_classes:
            raise InputError(f"{len(colours)} palette colours for a model with {num_classes} classes")
        if any(len(colour) != 3 or not all(0 <= c <= 255 for c in colour) for colour in colours):
            raise InputError("palette colours must be [r, g, b] triples in 0..255")
    return names, colours


def _check_norm(name: str, values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != 3:
        raise InputError(f"{name} must have 3 values (R, G, B), got {values}")
    if name == "std" and any(v <= 0 for v in values):
        raise InputError(f"std must be positive, got {values}")
    return values


def _check_inference(values: Any, where: str = "inference") -> dict[str, Any] | None:
    """The ``inference`` settings (dataset, clip_length, attention), checked."""
    if values is None:
        return None
    if not isinstance(values, Mapping):
        raise InputError(f"{where} must be a mapping (dataset, clip_length, attention), got {values!r}")
    values = dict(values)
    length = values.get("clip_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise InputError(f"{where}.clip_length must be a positive integer, got {length!r}")
    if values.get("attention") not in (None, "3d", "2d"):
        raise InputError(f"{where}.attention must be '3d' or '2d', got {values['attention']!r}")
    return values


def save_pretrained(
    model: torch.nn.Module,
    directory: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    source: Mapping[str, Any] | None = None,
    inference: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory`` (``model.safetensors`` + ``config.json``), atomically.

    ``class_names``/``palette``/``mean``/``std`` default to the model's own attributes of those
    names (set by `from_pretrained` and the converters), then to none / ImageNet statistics.
    ``inference`` (default: the model's ``inference`` attribute): what using the model needs
    beyond its weights: ``dataset`` it was trained on and, for a video model, ``clip_length``
    and ``attention`` (``3d`` | ``2d``). An existing ccnet model folder at ``directory`` is
    replaced; any other non-empty folder is refused (nothing of the user's is ever deleted).
    Returns the folder.
    """
    from safetensors.torch import save_file

    directory = Path(directory).absolute()
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"save_pretrained needs a CCNet (with a .config dict), got {type(model).__name__}")
    if directory.exists():
        if not directory.is_dir():
            raise RunFolderError(f"{directory}: exists and is not a folder")
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _OWN_FILES)
        if foreign:
            raise RunFolderError(f"{directory}: folder exists and holds other files ({', '.join(foreign[:3])}"
                                 f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder")

    num_classes = int(config["num_classes"])
    names, colours = _check_labels(
        num_classes,
        class_names if class_names is not None else getattr(model, "class_names", None),
        palette if palette is not None else getattr(model, "palette", None),
    )
    mean = _check_norm("mean", mean if mean is not None else getattr(model, "mean", None) or IMAGENET_MEAN)
    std = _check_norm("std", std if std is not None else getattr(model, "std", None) or IMAGENET_STD)
    if source is None:
        source = getattr(model, "pretrained_source", None)
    inference = _check_inference(inference if inference is not None else getattr(model, "inference", None))

    document = {
        "format": "ccnet",
        "format_version": FORMAT_VERSION,
        "ccnet_version": __version__,
        "architecture": type(model).__name__,
        "model": config,
        "id2label": None if names is None else {str(i): name for i, name in enumerate(names)},
        "palette": colours,
        "mean": mean,
        "std": std,
    }
    if source:
        document["source"] = dict(source)
    if inference:
        document["inference"] = inference
    text = json.dumps(document, indent=2) + "\n"
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    with atomic_directory(directory) as tmp:
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
    return directory


def read_pretrained_config(directory: str | Path) -> dict[str, Any]:
    """The parsed and checked ``config.json`` of a ccnet model folder."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise UserFileNotFoundError(f"{directory}: not a folder (a ccnet model is a folder with {CONFIG_NAME} "
                                    f"and {WEIGHTS_NAME})")
    if not path.is_file():
        raise UserFileNotFoundError(f"{path}: not found; {directory} is not a ccnet model folder")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != "ccnet":
        raise CheckpointError(f"{path}: not a ccnet model config (no \"format\": \"ccnet\")")
    version = document.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version} is newer than this ccnet supports "
                              f"({FORMAT_VERSION}); upgrade ccnet-pytorch")
    if not isinstance(document.get("model"), dict) or "num_classes" not in document["model"]:
        raise CheckpointError(f"{path}: no \"model\" constructor config with num_classes")
    return document


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserFileNotFoundError(f"{path}: not found")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsafeFileError(f"{path}: not a readable safetensors file (truncated or corrupt?): {first}") from None


def from_pretrained(directory: str | Path, model_class: type[ModelT], *,
                    map_location: str | torch.device = "cpu", revision: str | None = None) -> ModelT:
    """Rebuild a model written by `save_pretrained` as ``model_class``, in eval mode.

    ``directory`` is a local folder or, when no such path exists, a Hugging Face Hub repo id
    (``"org/name"``, at ``revision``; needs the ``hub`` extra): see `ccnet.models.hf_hub`.

    The returned model also carries ``class_names`` (tuple or None), ``palette`` (tuple of RGB
    tuples or None), ``mean`` and ``std`` (tuples, 0..255 pixel units, RGB) and
    ``pretrained_source`` (dict or None) and ``inference`` (dict or None: see `save_pretrained`).
    """
    directory = resolve_pretrained(directory, revision)
    document = read_pretrained_config(directory)
    config_path = directory / CONFIG_NAME
    architecture = document.get("architecture", "CCNet")  # folders written before the field: CCNet
    if architecture != model_class.__name__:
        raise CheckpointError(f"{config_path}: holds a {architecture}, not a {model_class.__name__}; "
                              f"load it with ccnet.load_pretrained")
    try:
        model = model_class(**document["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: cannot build the model from its config: {error}") from None
    weights_path = directory / WEIGHTS_NAME
    state = _read_weights(weights_path)
    load_state_dict_checked(model, state, source=str(weights_path))
    model.eval()

    id2label = document.get("id2label")
    names = None
    if id2label is not None:
        try:
            names = [id2label[str(i)] for i in range(model.num_classes)]
        except (KeyError, TypeError):
            raise CheckpointError(f"{config_path}: id2label must map every class id 0..{model.num_classes - 1} "
                                  f"to a name") from None
    names, colours = _check_labels(model.num_classes, names, document.get("palette"))
    model.class_names = None if names is None else tuple(names)
    model.palette = None if colours is None else tuple(tuple(c) for c in colours)
    model.mean = tuple(_check_norm("mean", document.get("mean", IMAGENET_MEAN)))
    model.std = tuple(_check_norm("std", document.get("std", IMAGENET_STD)))
    model.pretrained_source = document.get("source")
    model.inference = _check_inference(document.get("inference"), f"{config_path}: inference")
    return model.to(map_location)


def resolve_pretrained(src: str | Path, revision: str | None = None) -> Path:
    """The local folder of ``src``: ``src`` itself when it exists or is not shaped like a Hub repo
    id, else the snapshot of Hub repo ``src`` at ``revision`` (default: main) holding
    ``config.json`` and ``model.safetensors`` (downloaded into the standard cache; needs the
    ``hub`` extra)."""
    if not hf_hub.is_repo_id(src):
        if revision is not None:
            raise InputError(f"{src}: revision={revision!r} applies to a Hub repo id, not a local path")
        return Path(src)
    return hf_hub.download(str(src), revision, (CONFIG_NAME, WEIGHTS_NAME))


def read_run_metrics(folder: str | Path) -> dict[str, Any] | None:
    """The ``metrics.json`` ``ccnet train`` writes next to a run's ``model/`` folder, or None."""
    path = Path(folder).absolute().parent / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(metrics, dict):
        raise InputError(f"{path}: expected a JSON object of metrics")
    return metrics


def push_folder_to_hub(folder: str | Path, repo_id: str, *, metrics: Mapping[str, Any] | None = None,
                       revision: str | None = None, private: bool | None = None, token: str | None = None,
                       commit_message: str | None = None) -> Any:
    """Upload the ccnet model folder ``folder`` (``model.safetensors``, ``config.json``) to Hub repo
    ``repo_id`` with a generated model card (``README.md``); the repo is created if missing.

    ``metrics`` default: the run's ``metrics.json`` next to ``folder`` (see `read_run_metrics`).
    Returns huggingface_hub's commit info.
    """
    folder = Path(folder)
    document = read_pretrained_config(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise UserFileNotFoundError(f"{folder / WEIGHTS_NAME}: not found; nothing to push")
    hf_hub.check_repo_id(repo_id)
    if metrics is None:
        metrics = read_run_metrics(folder)
    card = model_card(document, repo_id, metrics)
    with tempfile.TemporaryDirectory(prefix="ccnet-push-") as tmp:
        staging = Path(tmp)
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            shutil.copyfile(folder / name, staging / name)
        (staging / CARD_NAME).write_text(card, encoding="utf-8")
        return hf_hub.upload(staging, repo_id, revision=revision, private=private, token=token,
                             commit_message=commit_message)


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for a model class with a ``config`` dict of its
    constructor arguments and a ``num_classes`` attribute."""

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write ``model.safetensors`` + ``config.json`` to ``directory`` (atomically); keyword
        arguments ``class_names``, ``palette``, ``mean``, ``std``, ``inference``: see `save_pretrained`."""
        return save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(cls: type[ModelT], directory: str | Path, **kwargs: Any) -> ModelT:
        """The model saved by `save_pretrained` (eval mode), with ``class_names``,
        ``palette``, ``mean`` and ``std`` attributes: see `from_pretrained`. ``directory``
        may also be a Hub repo id (``"org/name"``, ``revision=``)."""
        return from_pretrained(directory, cls, **kwargs)

    def push_to_hub(self, repo_id: str, *, metrics: Mapping[str, Any] | None = None,
                    revision: str | None = None, private: bool | None = None, token: str | None = None,
                    commit_message: str | None = None, **save_kwargs: Any) -> Any:
        """Upload the model (``model.safetensors``, ``config.json``) and a generated model card to
        Hub repo ``repo_id`` (created if missing; needs the ``hub`` extra). ``metrics``: a run's
        ``metrics.json`` for the card; ``save_kwargs``: see `save_pretrained`. Returns the
        commit info."""
        with tempfile.TemporaryDirectory(prefix="ccnet-push-") as tmp:
            folder = save_pretrained(self, Path(tmp) / "model", **save_kwargs)
            return push_folder_to_hub(folder, repo_id, metrics=metrics or {}, revision=revision,
                                      private=private, token=token, commit_message=commit_message)
