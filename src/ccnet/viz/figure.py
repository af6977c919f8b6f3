"""Figures of attention maps, like the paper's: the image with the chosen pixel marked, the map
after each loop as a heat-map overlay, the prediction beside them. Plain numpy + OpenCV (a core
dependency): no plotting library needed, no fonts to fetch.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from ccnet.data.info import DatasetInfo
from ccnet.engine.predict import blend
from ccnet.viz.attention import AttentionMaps, feature_index

__all__ = [
    "attention_figure",
    "attention_row",
    "heat_overlay",
    "legend",
    "mark_pixel",
    "upsample_map",
]

MIN_PANEL_SIDE = 256  # small images are enlarged (nearest) to at least this, so text and markers stay legible
HEAT_ALPHA = 0.6
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TITLE_HEIGHT = 26
_GAP = 6


def display_scale(size: Sequence[int]) -> int:
    """Integer enlargement of an ``(H, W)`` image so that its shorter side is at least
    `MIN_PANEL_SIDE`."""
    return max(1, -(-MIN_PANEL_SIDE // max(1, min(size))))


def upsample_map(feature_map: Tensor | np.ndarray, size: Sequence[int], align_corners: bool) -> np.ndarray:
    """An ``(h, w)`` feature-resolution map at image size ``(H, W)``: every pixel takes the value
    of the feature cell it falls on (`ccnet.viz.feature_index`), so the cells stay visible
    and the chosen pixel lies inside its own cell."""
    values = torch.as_tensor(feature_map)
    rows = feature_index(torch.arange(size[0]), size[0], values.shape[0], align_corners)
    cols = feature_index(torch.arange(size[1]), size[1], values.shape[1], align_corners)
    return values[rows][:, cols].double().numpy()


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """``image`` (uint8 RGB) blended with ``heat`` (non-negative, any scale: shown relative to its
    maximum) in OpenCV's JET colour map (blue = none, red = the maximum)."""
    peak = float(heat.max())
    scaled = np.zeros(heat.shape, np.uint8) if peak <= 0 else np.rint(255 * heat / peak).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return blend(image, colours, alpha)


def mark_pixel(image: np.ndarray, pixel: Sequence[int], scale: int = 1) -> np.ndarray:
    """A copy of ``image`` with a ring around ``pixel`` (``(y, x)`` in the unscaled image)."""
    out = np.ascontiguousarray(image).copy()
    centre = (int(pixel[1] * scale + scale // 2), int(pixel[0] * scale + scale // 2))
    radius = max(6, min(out.shape[:2]) // 40)
    cv2.circle(out, centre, radius + 2, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.circle(out, centre, radius + 2, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.circle(out, centre, 2, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    return image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` under a white strip with ``title`` (shortened to fit)."""
    strip = np.full((_TITLE_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    while len(title) > 4 and cv2.getTextSize(title, _FONT, 0.5, 1)[0][0] > panel.shape[1] - 8:
        title = title[:-4] + "..."
    cv2.putText(strip, title, (4, _TITLE_HEIGHT - 8), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def _hstack(panels: Sequence[np.ndarray]) -> np.ndarray:
    gap = np.full((panels[0].shape[0], _GAP, 3), 255, np.uint8)
    parts = [p for panel in panels for p in (panel, gap)][:-1]
    return np.concatenate(parts, axis=1)


def _vstack(rows: Sequence[np.ndarray]) -> np.ndarray:
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, _GAP), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(padded, axis=0)[:-_GAP]


def attention_row(
    image: np.ndarray,
    maps: AttentionMaps,
    index: int,
    info: DatasetInfo,
    *,
    align_corners: bool,
) -> np.ndarray:
    """One row of the figure for pixel ``maps.pixels[index]`` of a 2D model: the image with the
    pixel marked, its effective map after each loop, the prediction with the pixel's class."""
    if len(maps.feature_size) != 2:
        raise ValueError(f"attention figures are drawn for 2D maps; got {len(maps.feature_size)}D maps "
                         "(draw one frame: maps.loops[:, :, t])")
    size = image.shape[:2]
    scale = display_scale(size)
    pixel = maps.pixels[index]
    prediction = maps.logits[0].argmax(0).cpu().numpy()
    predicted = int(prediction[pixel])
    big = _enlarge(image, scale)

    panels = [_titled(mark_pixel(big, pixel, scale), f"pixel (y={pixel[0]}, x={pixel[1]})")]
    for r in range(maps.recurrence):
        heat = upsample_map(maps.loops[index, r].cpu(), size, align_corners)
        panel = mark_pixel(_enlarge(heat_overlay(image, heat), scale), pixel, scale)
        title = "loop 1 (its cross)" if r == 0 else f"after loop {r + 1} (composed)"
        panels.append(_titled(panel, title))
    overlay = _enlarge(blend(image, info.colorize(prediction)), scale)
    panels.append(_titled(mark_pixel(overlay, pixel, scale), f"prediction: {info.class_names[predicted]}"))
    return _hstack(panels)


def legend(info: DatasetInfo, classes: Sequence[int], width: int) -> np.ndarray:
    """A white strip with a colour swatch and the name of each class in ``classes``."""
    rows, x = [], 6
    strip = np.full((22, width, 3), 255, np.uint8)
    for c in classes:
        text_width = cv2.getTextSize(info.class_names[c], _FONT, 0.45, 1)[0][0]
        if x + 18 + text_width > width and x > 6:
            rows.append(strip)
            strip, x = np.full((22, width, 3), 255, np.uint8), 6
        cv2.rectangle(strip, (x, 5), (x + 12, 17), tuple(int(v) for v in info.palette[c]), -1)
        cv2.rectangle(strip, (x, 5), (x + 12, 17), (0, 0, 0), 1)
        cv2.putText(strip, info.class_names[c], (x + 16, 16), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 16 + text_width + 14
    rows.append(strip)
    return np.concatenate(rows, axis=0)


def attention_figure(image: np.ndarray, maps: AttentionMaps, info: DatasetInfo, *, align_corners: bool) -> np.ndarray:
    """All pixels of ``maps``: one `attention_row` each, then a legend of the predicted classes."""
    rows = [attention_row(image, maps, i, info, align_corners=align_corners) for i in range(len(maps.pixels))]
    present = sorted(int(c) for c in maps.logits[0].argmax(0).unique())
    return _vstack([*rows, legend(info, present, rows[0].shape[1])])
