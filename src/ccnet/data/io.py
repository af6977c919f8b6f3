"""Reading images and label maps from disk, with errors that name the file at fault.

Images are decoded with Pillow and always ``load()``-ed, so a truncated file fails here (with its
path) rather than deep inside a DataLoader worker. Label maps are read as raw indices: a palette
PNG (PASCAL VOC) gives its palette index per pixel, never its colours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ccnet.errors import DatasetError
from ccnet.files import atomic_path

__all__ = ["DataWarning", "DatasetError", "read_image", "read_label", "write_label"]

# Label modes whose pixel values are class indices (Pillow mode names).
_INDEX_MODES = {"P", "L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"}


class DataWarning(UserWarning):
    """Data that can still be used, but not all of it: a truncated video, a gap in a folder of
    frames. The message names the path and says what is missing; ``ccnet`` prints it as one line."""


def _open(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, turning every failure into a DatasetError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()  # decodes now: truncated or corrupt data raises here, not on first use
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: cannot read image ({error})") from error
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 RGB, shape (H, W, 3).

    Grey, palette, RGBA and CMYK files are converted to RGB. EXIF orientation is deliberately
    ignored: label maps carry none, so rotating only the image would misalign the pair.
    """
    image = _open(path)
    if image.mode != "RGB":
        if image.mode.startswith("I;16") or image.mode in {"I", "F"}:
            raise DatasetError(f"{path}: {image.mode} (16-bit/float) images are not supported; expected 8-bit RGB")
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)  # a writable copy (Pillow's buffer view is read-only)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label map as raw uint8 values, shape (H, W).

    Palette PNGs give their palette indices; 16-bit and 32-bit single-channel files are accepted
    when every value fits 0..255. An RGB file is accepted only when it is grey (R = G = B), as
    some tools save single-channel masks that way; a colour-coded RGB mask is an error.
    """
    image = _open(path)
    mode = image.mode
    if mode in {"LA", "PA"}:  # drop the alpha channel, keep the index
        image = image.getchannel(0)
        mode = image.mode
    if mode in _INDEX_MODES:
        values = np.array(image)
    elif mode in {"RGB", "RGBA"}:
        rgb = np.asarray(image)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()):
            raise DatasetError(
                f"{path}: colour (RGB) label map; expected a single-channel or palette PNG of class indices"
            )
        values = np.ascontiguousarray(rgb[..., 0])
    else:
        raise DatasetError(f"{path}: unsupported label image mode {mode!r}; expected indices in an 8-bit PNG")
    if values.dtype != np.uint8:
        if values.dtype == np.bool_:
            return values.astype(np.uint8)
        low, high = int(values.min(initial=0)), int(values.max(initial=0))
        if low < 0 or high > 255:
            raise DatasetError(f"{path}: label values {low}..{high} do not fit 0..255")
        values = values.astype(np.uint8)
    return values


def write_label(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a uint8 (H, W) label map as a grey PNG atomically (temporary file, then rename).

    A crash never leaves a half-written PNG under the final name, so re-running a preparation
    step is always safe.
    """
    path = Path(path)
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: expected a uint8 (H, W) label map, got {label.dtype} {label.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(label).save(tmp, format="PNG")
