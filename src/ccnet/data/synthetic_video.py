"""A synthetic video dataset whose context cue is in one frame of the clip only, rendered on the fly.

Why it exists: 3D criss-cross attention is meant to carry information between the frames of a
clip. Here some pixels' class is decided by a cue that, in most frames, only *another* frame
shows: a model that attends within each frame (the same network run frame by frame) cannot
classify them there, one that attends across the clip can.

Clip (every random draw comes from ``numpy.random.default_rng([seed, crc32(split), index])``,
so a clip is a pure function of ``(seed, split, index)``), ``clip_length`` frames of one scene:

* **background** (class 0), **local classes** (1..3: stripes, checker, solid orange) and
  **grey context objects** (4..6) as in `ccnet.data.synthetic`: the grey objects look
  alike whatever their class; every grey object of a clip has the class of the clip's key.
* **motion**: every object moves in a straight line at up to ``max_speed`` (4%) of the shorter
  side per frame; the background is fixed (a static camera); pixel noise is drawn per frame.
* **key band**: in *one* frame of the clip (the key frame, drawn at random), a band of the key
  colour (red, green or blue, in a light frame) runs along one whole side of the image (top,
  bottom, left or right; ``key_size`` = 15% of the shorter side thick). The other frames show no
  band. Band pixels carry the class they encode (supervising them locally teaches the backbone
  the key colours).
* **geometry**: the grey objects stay beyond a gap (``key_gap``, 15%) from the band, so they do
  not touch it; since the band spans the image, every grey pixel shares its column (top/bottom
  band) or its row (left/right band) with the band in the key frame.

What attention can do with that (R loops of criss-cross attention on the feature volume):

* **per-frame attention** (the 2D model run frame by frame): in the key frame a grey pixel sees
  the band on its own column or row (one hop); in the other ``T - 1`` frames nothing in the
  frame tells the three grey classes apart: a guess among three.
* **3D attention, R=2**: the first loop carries the band along the columns (rows) of the key
  frame and along the temporal lines through the band, so the band's place in every frame knows
  the key; the second loop brings it to any grey pixel of any frame on those columns (rows).
  Every grey pixel of every frame can be classified. (R=1 only reaches the pixel's own place in
  the key frame, a grey or background pixel there.)

Size: any ``(H, W)`` from 32 up; the video config uses 128x128 frames and 4-frame clips
(ResNet-18 CCNet3D at output stride 16: 8x8x4 feature volumes). Rendering is vectorised numpy,
about 1 ms per frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ccnet.data.clips import normalize_clip
from ccnet.data.info import DatasetInfo
from ccnet.data.synthetic import (
    _NOISE_SIGMA,
    CONTEXT_CLASSES,
    KEY_COLOURS,
    KEY_FRAME_COLOUR,
    LOCAL_CLASSES,
    SYNTHETIC_INFO,
    RenderedDataset,
    _ellipse_mask,
    _uniform_int,
    paint_background,
    paint_local_object,
)

__all__ = ["SIDES", "SYNTHETIC_VIDEO_INFO", "SyntheticVideoDataset"]

SYNTHETIC_VIDEO_INFO = DatasetInfo(name="synthetic_video", class_names=SYNTHETIC_INFO.class_names,
                                   palette=SYNTHETIC_INFO.palette, ignore_index=SYNTHETIC_INFO.ignore_index)
SIDES = ("top", "bottom", "left", "right")


class SyntheticVideoDataset(RenderedDataset):
    """Clips whose grey objects are classified by a key band shown in one frame only.

    See the module docstring for the design. ``render(index)`` / ``load(index)`` return
    ``(images uint8 (T, H, W, 3), labels uint8 (T, H, W))``; ``dataset[index]`` returns
    ``{"image": float (3, T, H, W), "label": int64 (T, H, W), "score": bool (T,) (all True),
    "name": f"{split}_{index:06d}"}`` after ``transform`` (ImageNet normalisation when None).
    """

    default_transform = staticmethod(normalize_clip)
    default_eval_samples = 32
    min_size = 32

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int | None = None,
        size: tuple[int, int] = (128, 128),
        clip_length: int = 4,
        seed: int = 0,
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]] | None = None,
        key_size: float = 0.15,
        key_gap: float = 0.15,
        max_speed: float = 0.04,
    ) -> None:
        super().__init__(split, num_samples, size, seed, transform)
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        if not 0 < key_size < 0.3 or not 0 <= key_gap < 0.3 or not 0 <= max_speed < 0.2:
            raise ValueError(f"need 0 < key_size < 0.3, 0 <= key_gap < 0.3, 0 <= max_speed < 0.2; got "
                             f"{key_size}, {key_gap}, {max_speed}")
        self.clip_length = int(clip_length)
        self.key_size, self.key_gap, self.max_speed = float(key_size), float(key_gap), float(max_speed)
        self.info = SYNTHETIC_VIDEO_INFO

    def extras(self, index: int) -> dict:
        return {"score": torch.ones(self.clip_length, dtype=torch.bool)}  # every frame is annotated

    # ------------------------------------------------------------------------------------------
    def layout(self, index: int) -> dict:
        """The clip description of sample ``index`` (what `render` paints)."""
        return self._layout(self.rng(index))

    def _track(self, rng: np.random.Generator, region: tuple[int, int, int, int], h: int, w: int,
               speed: float) -> list[tuple[int, int]]:
        """Top-left corners, one per frame, of an (h, w) object moving straight inside ``region``."""
        y0, y1, x0, x1 = region
        steps = self.clip_length - 1
        vy, vx = rng.uniform(-speed, speed, size=2)
        span_y, span_x = (y1 - y0 - h), (x1 - x0 - w)
        vy = float(np.clip(vy, -span_y / max(steps, 1), span_y / max(steps, 1)))
        vx = float(np.clip(vx, -span_x / max(steps, 1), span_x / max(steps, 1)))
        lo_y, hi_y = y0 - min(0.0, vy * steps), y1 - h - max(0.0, vy * steps)
        lo_x, hi_x = x0 - min(0.0, vx * steps), x1 - w - max(0.0, vx * steps)
        sy, sx = rng.uniform(lo_y, max(lo_y, hi_y)), rng.uniform(lo_x, max(lo_x, hi_x))
        return [(round(sy + vy * t), round(sx + vx * t)) for t in range(self.clip_length)]

    def _layout(self, rng: np.random.Generator) -> dict:
        H, W = self.size
        short = min(H, W)
        side = SIDES[int(rng.integers(len(SIDES)))]
        key_frame = int(rng.integers(self.clip_length))
        context = int(rng.integers(len(CONTEXT_CLASSES)))
        k = max(3, round(self.key_size * short))
        length = H if side in ("top", "bottom") else W  # the axis across the band
        margin = _uniform_int(rng, round(0.02 * length), round(0.08 * length))
        gap = round(self.key_gap * length)
        start = margin if side in ("top", "left") else length - margin - k  # band position across
        near, far = (start + k + gap, length) if side in ("top", "left") else (0, start - gap)
        region = (near, far, 0, W) if side in ("top", "bottom") else (0, H, near, far)
        speed = self.max_speed * short

        grey = float(rng.uniform(140, 200))
        rh, rw = region[1] - region[0], region[3] - region[2]
        greys = []
        for _ in range(int(rng.integers(1, 4))):
            h = _uniform_int(rng, max(2, round(0.25 * rh)), max(2, round(0.6 * rh)))
            w = _uniform_int(rng, max(2, round(0.25 * rw)), max(2, round(0.6 * rw)))
            greys.append(((h, w), self._track(rng, region, h, w, speed), bool(rng.integers(2))))
        locals_ = []
        for _ in range(int(rng.integers(1, 4))):
            cls = LOCAL_CLASSES[int(rng.integers(len(LOCAL_CLASSES)))]
            h = _uniform_int(rng, max(2, round(0.12 * H)), max(2, round(0.3 * H)))
            w = _uniform_int(rng, max(2, round(0.12 * W)), max(2, round(0.3 * W)))
            params = {"period": _uniform_int(rng, 4, 9), "orientation": int(rng.integers(4)),
                      "cell": _uniform_int(rng, 2, 5), "phase": int(rng.integers(16))}
            locals_.append((cls, (h, w), self._track(rng, (0, H, 0, W), h, w, speed), bool(rng.integers(2)), params))
        return {
            "side": side,
            "band": (start, k),  # offset and thickness across the band
            "key_frame": key_frame,
            "key_class": CONTEXT_CLASSES[context],
            "grey_region": region,
            "grey": grey,
            "grey_objects": greys,
            "local_objects": locals_,
            "background": rng.uniform(25, 95) + rng.uniform(-15, 15, size=3),
            "gradient": rng.uniform(-20, 20, size=2),
        }

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images uint8 (T, H, W, 3) RGB, labels uint8 (T, H, W))`` of clip ``index``."""
        rng = self.rng(index)
        scene = self._layout(rng)
        H, W = self.size
        background = paint_background(self.size, scene)
        cls = scene["key_class"]
        images = np.empty((self.clip_length, H, W, 3), dtype=np.float32)
        labels = np.zeros((self.clip_length, H, W), dtype=np.uint8)
        for t in range(self.clip_length):
            image, label = images[t], labels[t]
            image[:] = background
            for local_cls, (h, w), track, ellipse, params in scene["local_objects"]:
                paint_local_object(image, label, local_cls, (*track[t], h, w), ellipse, params)
            for (h, w), track, ellipse in scene["grey_objects"]:
                y, x = track[t]
                mask = _ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)
                image[y:y + h, x:x + w][mask] = scene["grey"]
                label[y:y + h, x:x + w][mask] = cls
            if t == scene["key_frame"]:
                self._paint_band(image, label, scene)
        images += rng.standard_normal(images.shape, dtype=np.float32) * np.float32(_NOISE_SIGMA)
        np.clip(images, 0, 255, out=images)
        return images.astype(np.uint8), labels

    @staticmethod
    def _paint_band(image: np.ndarray, label: np.ndarray, scene: dict) -> None:
        start, k = scene["band"]
        across_rows = scene["side"] in ("top", "bottom")
        band = (slice(start, start + k), slice(None)) if across_rows else (slice(None), slice(start, start + k))
        b = 1 if k < 8 else 2
        inner = (slice(start + b, start + k - b), slice(b, -b)) if across_rows else \
            (slice(b, -b), slice(start + b, start + k - b))
        image[band] = KEY_FRAME_COLOUR
        image[inner] = KEY_COLOURS[CONTEXT_CLASSES.index(scene["key_class"])]
        label[band] = scene["key_class"]

    def key_frame(self, index: int) -> int:
        """The frame of clip ``index`` that shows the key band."""
        return self.layout(index)["key_frame"]
