"""A synthetic task whose context is pixel-specific: three keys, and each grey object reads its own.

Why it exists: in the one-key task (`ccnet.data.synthetic`) every grey object takes the colour
of the scene's only key, a colour found nowhere else, so any module with an image-wide summary
(PPM's 1x1 bin, ASPP's image pooling, a non-local block) hands the answer to every pixel; in the
two-key task a feature at a key can still encode both its colour and its frame. Here **every scene
holds all three key colours**, once each, so the colours present (what an image-wide average sees)
are the same in every scene; only *where* each colour is decides a grey object's class.

Scene: three keys (red, green, blue squares in a light frame, side ``key_size`` (15%) of the shorter
side, at most a quarter of the width), in random order at random, non-overlapping positions along
the top or the bottom edge (the edge drawn per scene, 2-5% of the height from it). 1-3 grey objects
lie on the far side of the image, beyond a gap of ``key_gap`` (55%) of the height below (or above)
the keys' rows: ~88 px at 160x160. (Pilots at 160 px: with a gap of 20% or 40% (32 or 64 px) the
convolutional backbone alone reached the key along the column and learned the task as fast as RCCA;
the gap is what keeps it out of the backbone's reach.) Each grey object lies within
the columns of one key only: it takes that key's class. So a grey object shares no row with any key,
lies tens of pixels from its key, and its own column leads to it: the criss-cross geometry (one hop
along the column) fits the task by design; it tests the paper's argument (context that pooling
cannot give), not its Cityscapes margins.

The keys carry their class in the training split (supervising them teaches the key colours, and
gives the consistency loss all three context classes in every image) and the ignore label in every
other split: a key is recognisable locally, so scoring it would only dilute the context-class IoU,
which then measures the grey objects alone.

Everything else (background, local classes, noise, classes and palette, a sample being a pure
function of ``(seed, split, index)``) is the one-key dataset's.
"""

from __future__ import annotations

import numpy as np

from ccnet.data.synthetic import (
    _NOISE_SIGMA,
    CONTEXT_CLASSES,
    IGNORE_INDEX,
    KEY_COLOURS,
    KEY_FRAME_COLOUR,
    SyntheticContextDataset,
    _ellipse_mask,
    _uniform_int,
)

__all__ = ["ColumnsSyntheticDataset"]


class ColumnsSyntheticDataset(SyntheticContextDataset):
    """Scenes with three keys along one edge, each grey object under one key's columns taking its
    class. Same interface and classes as `SyntheticContextDataset`; ``layout(index)`` has
    ``"keys"``: ``(y, x, side, class)`` of each key left to right, ``"edge"``: ``"top"`` or
    ``"bottom"``, ``"grey_objects"``: ``(key index, (y, x, h, w), ellipse, class)``."""

    def __init__(self, split: str = "train", *, key_gap: float = 0.55, key_size: float = 0.15, **kwargs) -> None:
        super().__init__(split, key_gap=key_gap, key_size=key_size, **kwargs)

    def key_side(self) -> int:
        H, W = self.size
        return max(3, min(round(self.key_size * min(H, W)), W // 4))

    def _layout(self, rng: np.random.Generator) -> dict:
        H, W = self.size
        k = self.key_side()
        top = bool(rng.integers(2))
        # Keys: rows 3..15% of the height from the edge; columns: the free width split at random
        # into four gaps (before, between, after), so the three keys never share a column.
        lo = 0.02 * H
        offset = int(np.clip(round(rng.uniform(lo, max(lo, 0.05 * H))), 0, H - k))
        ky = offset if top else H - k - offset
        gaps = rng.dirichlet(np.ones(4)) * (W - 3 * k)
        xs = [int(np.floor(gaps[0] + i * k + gaps[1:i + 1].sum())) for i in range(3)]
        classes = [CONTEXT_CLASSES[int(i)] for i in rng.permutation(len(CONTEXT_CLASSES))]
        keys = [(ky, x, k, cls) for x, cls in zip(xs, classes, strict=True)]

        gap = max(1, round(self.key_gap * H))
        ry0, ry1 = (min(ky + k + gap, H - 2), H) if top else (0, max(ky - gap, 2))
        span = ry1 - ry0
        chosen = [i for i in range(3) if rng.random() < 0.6] or [int(rng.integers(3))]
        objects = []
        for i in chosen:  # at most one grey object per key, within its columns
            h = _uniform_int(rng, max(2, round(0.3 * span)), max(2, round(0.8 * span)))
            w = _uniform_int(rng, max(2, round(0.6 * k)), k)
            h = min(h, span)
            y = ry0 + _uniform_int(rng, 0, span - h)
            x = xs[i] + _uniform_int(rng, 0, k - w)
            objects.append((i, (y, x, h, w), bool(rng.integers(2)), classes[i]))

        return {
            "keys": keys,
            "key": keys[0][:3],
            "edge": "top" if top else "bottom",
            "grey": float(rng.uniform(140, 200)),
            "grey_region": (ry0, ry1, 0, W),
            "grey_objects": objects,
            "local_objects": self._local_objects(rng),
            "background": rng.uniform(25, 95) + rng.uniform(-15, 15, size=3),
            "gradient": rng.uniform(-20, 20, size=2),
        }

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, label uint8 (H, W))`` of sample ``index``."""
        rng = self.rng(index)
        scene = self._layout(rng)
        H, W = self.size
        image, label = self._paint_background_and_locals(scene)
        for _, (y, x, h, w), ellipse, cls in scene["grey_objects"]:
            mask = _ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)
            image[y:y + h, x:x + w][mask] = scene["grey"]
            label[y:y + h, x:x + w][mask] = cls
        for y, x, k, cls in scene["keys"]:
            image[y:y + k, x:x + k] = KEY_FRAME_COLOUR
            b = 1 if k < 8 else 2
            image[y + b:y + k - b, x + b:x + k - b] = KEY_COLOURS[CONTEXT_CLASSES.index(cls)]
            label[y:y + k, x:x + k] = cls if self.key_label == "class" and self.split == "train" else IGNORE_INDEX
        image += rng.standard_normal((H, W, 3), dtype=np.float32) * np.float32(_NOISE_SIGMA)
        np.clip(image, 0, 255, out=image)
        return image.astype(np.uint8), label
