"""A harder synthetic task: two keys, and each grey object needs its own one.

Why it exists: in `ccnet.data.synthetic.SyntheticContextDataset` every grey object of a
scene takes the colour of the scene's single key, so the answer is the same for all of them and
an image-wide summary is enough: the 1x1 bin of PSPNet's pyramid pooling or the image-level
branch of ASPP hands it to every pixel at once. The paper's case for attention over pyramid
pooling is that each pixel gathers the context *it* needs; that task cannot test it.

Here a scene has **two keys** of two different context colours, at the two corners of one image
edge, told apart by their frames: one neutral white, one sand. Grey objects come in two tints,
neutral grey and sand grey, and each takes the class (colour) of the key whose frame matches its
tint. So objects of one scene belong to different classes, decided by different distant keys:
the image-wide average holds both key colours and does not say which belongs to which tint; an
attention that matches an object's tint with a key's frame reads the right one. The objects lie
beyond a gap from the keys on the far side of the image, as in the one-key task.

Everything else (background, local classes, noise, classes and palette, the sample being a pure
function of ``(seed, split, index)``) is the one-key dataset's.
"""

from __future__ import annotations

import numpy as np

from ccnet.data.synthetic import (
    _NOISE_SIGMA,
    CONTEXT_CLASSES,
    IGNORE_INDEX,
    KEY_COLOURS,
    SyntheticContextDataset,
    _ellipse_mask,
    _uniform_int,
)

__all__ = ["KINDS", "TwoKeySyntheticDataset"]

# Key frame colour and grey-object tint (added to the scene's grey level) of each kind.
KINDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "neutral": ((235, 235, 235), (0, 0, 0)),
    "sand": ((235, 200, 130), (24, 2, -42)),
}


class TwoKeySyntheticDataset(SyntheticContextDataset):
    """Scenes with two keys (neutral and sand frames) whose grey objects take the colour of the
    key of their own tint. Same interface and classes as `SyntheticContextDataset`;
    ``layout(index)["keys"]`` lists both keys as ``(y, x, side, class, kind)``."""

    def _layout(self, rng: np.random.Generator) -> dict:
        H, W = self.size
        k = max(3, round(self.key_size * min(H, W)))
        edge = int(rng.integers(4))  # the keys sit at both corners of one edge: top, bottom, left, right
        vertical = edge in (0, 1)  # keys along the top or bottom edge: objects below/above them
        across_n, along_n = (H, W) if vertical else (W, H)

        def offset(n: int) -> int:  # distance of a key from the edge, 3..35% of the side (minus the key)
            lo = 0.03 * n
            return int(np.clip(round(rng.uniform(lo, max(lo, 0.35 * n - k))), 0, n - k))

        across = [offset(across_n), offset(across_n)]
        along = [offset(along_n), along_n - k - offset(along_n)]  # one key near each corner
        if edge in (1, 3):  # bottom or right edge: measured from the far side
            across = [across_n - k - a for a in across]
        classes = [CONTEXT_CLASSES[int(i)] for i in rng.choice(len(CONTEXT_CLASSES), size=2, replace=False)]
        kinds = ["neutral", "sand"] if rng.random() < 0.5 else ["sand", "neutral"]
        keys = []
        for a, b, cls, kind in zip(across, along, classes, kinds, strict=True):
            y, x = (a, b) if vertical else (b, a)
            keys.append((y, x, k, cls, kind))

        # Grey objects: beyond the keys' band plus a gap, on the far side; along the edge anywhere.
        gap = max(1, round(self.key_gap * across_n))
        if edge in (0, 2):
            lo, hi = min(max(across) + k + gap, across_n - 2), across_n
        else:
            lo, hi = 0, max(min(across) - gap, 2)
        span = hi - lo
        class_of = {kind: cls for cls, kind in zip(classes, kinds, strict=True)}
        grey = float(rng.uniform(140, 200))
        objects = []
        object_kinds = kinds[::-1] if rng.random() < 0.5 else list(kinds)  # one of each kind at least
        object_kinds += [kinds[int(rng.integers(2))] for _ in range(int(rng.integers(0, 3)))]
        for kind in object_kinds:
            depth = _uniform_int(rng, max(2, round(0.3 * span)), max(2, round(0.75 * span)))
            width = _uniform_int(rng, max(2, round(0.15 * along_n)), max(2, round(0.4 * along_n)))
            depth, width = min(depth, span), min(width, along_n)
            a = lo + _uniform_int(rng, 0, span - depth)
            b = _uniform_int(rng, 0, along_n - width)
            box = (a, b, depth, width) if vertical else (b, a, width, depth)
            objects.append((kind, box, bool(rng.integers(2)), class_of[kind]))

        locals_ = self._local_objects(rng)
        return {
            "keys": keys,
            "key": keys[0][:3],
            "grey": grey,
            "grey_objects": objects,
            "local_objects": locals_,
            "background": rng.uniform(25, 95) + rng.uniform(-15, 15, size=3),
            "gradient": rng.uniform(-20, 20, size=2),
        }

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, label uint8 (H, W))`` of sample ``index``."""
        rng = self.rng(index)
        scene = self._layout(rng)
        H, W = self.size
        image, label = self._paint_background_and_locals(scene)
        for kind, (y, x, h, w), ellipse, cls in scene["grey_objects"]:
            mask = _ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)
            image[y:y + h, x:x + w][mask] = np.float32(scene["grey"]) + np.asarray(KINDS[kind][1], np.float32)
            label[y:y + h, x:x + w][mask] = cls
        for y, x, k, cls, kind in scene["keys"]:
            image[y:y + k, x:x + k] = KINDS[kind][0]
            b = max(2, k // 6)  # a frame thick enough to tell the kinds apart at output stride 16
            image[y + b:y + k - b, x + b:x + k - b] = KEY_COLOURS[CONTEXT_CLASSES.index(cls)]
            label[y:y + k, x:x + k] = cls if self.key_label == "class" else IGNORE_INDEX
        image += rng.standard_normal((H, W, 3), dtype=np.float32) * np.float32(_NOISE_SIGMA)
        np.clip(image, 0, 255, out=image)
        return image.astype(np.uint8), label
