"""Prediction on image files: label PNGs (train ids), colour masks and overlays.

For each input ``<stem>.<ext>`` three files are written: ``<stem>.png`` (grayscale uint8 train ids,
the format `ccnet.engine.evaluate.evaluate_predictions` reads), ``<stem>_color.png`` (the
dataset palette) and ``<stem>_overlay.png`` (the image blended with the colour mask).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ccnet.data.io import DatasetError, read_image, write_label
from ccnet.engine.inference import infer
from ccnet.errors import InputError, UserFileNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "blend", "collect_inputs", "predict_images", "write_outputs"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
OVERLAY_ALPHA = 0.5


def collect_inputs(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image paths from an image file, a folder (its images, sorted, not recursive), a glob pattern
    (``**`` recursive; image files only, sorted) or a list of those (concatenated in order)."""
    if isinstance(spec, (list, tuple)):
        paths = [p for item in spec for p in collect_inputs(item)]
        if not paths:
            raise UserFileNotFoundError(f"no input images in {spec!r}")
        return paths
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _is_image(p))
    elif glob.has_magic(str(path)):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if _is_image(Path(p)))
    else:
        raise UserFileNotFoundError(f"input {str(spec)!r} is not an image file, a folder or a glob pattern "
                                    "that matches")
    if not found:
        raise UserFileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found for input {str(spec)!r}")
    return found


def predict_images(
    model: nn.Module,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    info: DatasetInfo,
    device: torch.device | str = "cpu",
    infer_kwargs: dict[str, Any] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    batch_size: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Segments each image and writes ``<stem>.png``, ``<stem>_color.png`` and ``<stem>_overlay.png``
    into ``out_dir`` (created); returns the label PNG paths in input order.

    Images (read as RGB with `ccnet.data.io.read_image`, normalised with ``mean``/``std`` in
    0..255 units) are grouped by size into batches of up to ``batch_size``. ``infer_kwargs`` go to
    `infer` (e.g. ``{"mode": "slide", "crop_size": 769}`` for tiled inference on large
    images); ``flip_lut`` defaults to ``info.flip_lut()`` when flipping. The model must already be
    on ``device``.
    """
    if info.num_classes > 256:
        raise ValueError(f"{info.num_classes} classes do not fit in uint8 label PNGs")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    _check_unique_stems(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(infer_kwargs or {})
    if kwargs.get("flip") and kwargs.get("flip_lut") is None:
        kwargs["flip_lut"] = info.flip_lut()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    written: dict[Path, Path] = {}
    with tqdm(total=len(paths), desc="predict", disable=not progress, dynamic_ncols=True) as bar:
        for batch_paths in _size_batches(paths, batch_size):
            images = [read_image(p) for p in batch_paths]
            x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float()
            probs = infer(model, (x - mean_t) / std_t, num_classes=info.num_classes, **kwargs)
            preds = probs.argmax(dim=1).to(torch.uint8).cpu().numpy()
            for path, image, pred in zip(batch_paths, images, preds, strict=True):
                written[path] = write_outputs(out_dir, path.stem, image, pred, info)
            bar.update(len(batch_paths))
    return [written[p] for p in paths]


def blend(image: np.ndarray, color: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``(1 - alpha) * image + alpha * color``, rounded to uint8."""
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * color.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def write_outputs(out_dir: Path, stem: str, image: np.ndarray, pred: np.ndarray, info: DatasetInfo) -> Path:
    """Write ``<stem>.png`` (train ids), ``<stem>_color.png`` and ``<stem>_overlay.png``; returns the first."""
    label_path = out_dir / f"{stem}.png"
    write_label(label_path, pred)  # grey "L" PNG, written atomically
    color = info.colorize(pred)
    Image.fromarray(color).save(out_dir / f"{stem}_color.png")
    Image.fromarray(blend(image, color)).save(out_dir / f"{stem}_overlay.png")
    return label_path


def _size_batches(paths: list[Path], batch_size: int) -> list[list[Path]]:
    """Batches of same-size images, in first-appearance order of each size (reads headers only)."""
    groups: dict[tuple[int, int], list[Path]] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path}: cannot read image ({error})") from error
        groups.setdefault(size, []).append(path)
    return [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def _check_unique_stems(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        other = seen.setdefault(path.stem, path)
        if other != path:
            raise InputError(f"{other} and {path} would write the same output files ({path.stem}.png)")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
