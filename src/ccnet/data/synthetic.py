"""A synthetic long-range-context segmentation dataset, rendered on the fly from a seed.

Why it exists: criss-cross attention is meant to carry information across the whole image (with
R=2 loops every pixel reaches every pixel). On natural images that benefit is a few mIoU points
after days of GPU training; here it must show in minutes on a CPU. So the scenes contain pixels
whose class **cannot** be told from their neighbourhood and is decided by content **far away,
mostly on other rows and columns**, next to ordinary locally-recognisable classes.

Scene (every random draw comes from ``numpy.random.default_rng([seed, crc32(split), index])``, so
a sample is a pure function of ``(seed, split, index)``; train and val never share a stream):

* **background** (class 0): a dark, tinted, slowly varying colour (level 25..95 plus a linear
  gradient), never as bright as the objects.
* **local classes** (1..3), 1-3 objects per image, rectangles or ellipses anywhere:
  ``stripes`` (yellow/dark stripes, period 4-9 px, random orientation), ``checker``
  (magenta/light checkerboard, 2-5 px squares), ``solid`` (flat orange). A few pixels of
  neighbourhood suffice to recognise them.
* **context classes** (4..6): 1-3 *plain neutral-grey* objects (rectangles or ellipses). Their
  look is drawn from one distribution whatever the class (grey level 140..200, shape, size,
  noise); every grey object of an image has the class of the image's single **key marker**:
  ``context_red``, ``context_green`` or ``context_blue``, the colour of the key.
* **key marker**: a square of the key colour in a light frame (easy to spot whatever its colour),
  side ``key_size`` (25%) of the shorter image side, in a corner zone (within 3..35% of the side
  from one horizontal and one vertical edge, corner drawn at random). Its pixels carry the class
  it encodes (``key_label="class"``; ``"ignore"`` labels them 255 instead): supervising the key
  locally makes the backbone learn key-colour features early, which the attention then carries.
* **geometry**: the grey objects lie in the rectangle on the far side of the key, beyond a gap of
  ``key_gap`` (20%) of the side *in rows and in columns*, so they share no row or column with the
  key and are ~55-260 px from it at 192x192. Except one: with probability ``aligned_prob`` (0.5)
  the first grey object is centred on the key's rows (or columns), still beyond the gap along the
  other axis. By default half the scenes have such an object and ~28% of the grey pixels lie on
  the key's rows or columns (``aligned_prob=1``: every scene, ~45%); the majority never do.
* i.i.d. Gaussian pixel noise (sigma 8) on everything, so no class is a single pixel value.

What each CCNet variant can do with that:

* no attention (R=0): a pixel's features come from the dilated ResNet. Its theoretical receptive
  field (~500 px) covers the scene, but reading a key tens of feature cells away is slow to learn:
  at 96x96 a conv-only CCNet learns the key relation in ~100 iterations, at 160x160 in ~400, at
  192x192 (output stride 16) not within 500: R=0 stays near a guess among three.
* R=1: a pixel attends to its row and column: it sees the key directly from the aligned objects
  (one hop), and elsewhere the conv features where its row and column cross the key's column and
  row, a few cells from the key. Measured: R=1 lands between R=0 and R=2 and varies with the
  seed (the README's "The default job" section has the numbers and the command).
* R=2: the first loop writes the key into every pixel of the key's row and column; the second
  reads it where the grey pixel's row and column cross them: every grey pixel can see the key.

Size: any ``(H, W)`` works (all lengths scale with the image; for tiny images margins are
clamped and the row/column separation may fail). The default 192x192 is what the default job
trains on (ResNet-18 CCNet at output stride 16: 12x12 features, ~50 ms per image for a training
step on 2 CPU threads); ``benchmarks/context_ranking.py`` holds the measurements. Rendering is
vectorised numpy, ~1-2 ms per image, so it runs inside the training loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ccnet.data.info import DatasetInfo
from ccnet.data.tensors import normalize

__all__ = [
    "CONTEXT_CLASSES",
    "KEY_COLOURS",
    "LOCAL_CLASSES",
    "SYNTHETIC_INFO",
    "SyntheticContextDataset",
    "normalize",
]

BACKGROUND = 0
STRIPES, CHECKER, SOLID = 1, 2, 3
LOCAL_CLASSES: tuple[int, ...] = (STRIPES, CHECKER, SOLID)
CONTEXT_CLASSES: tuple[int, ...] = (4, 5, 6)
IGNORE_INDEX = 255

# Key colour of each context class (same order as CONTEXT_CLASSES).
KEY_COLOURS: tuple[tuple[int, int, int], ...] = ((225, 35, 35), (35, 200, 35), (40, 70, 235))
KEY_FRAME_COLOUR = (235, 235, 235)

SYNTHETIC_INFO = DatasetInfo(
    name="synthetic",
    class_names=("background", "stripes", "checker", "solid", "context_red", "context_green", "context_blue"),
    palette=((70, 70, 70), (230, 220, 60), (200, 60, 200), (240, 150, 40),
             (225, 35, 35), (35, 200, 35), (40, 70, 235)),
    ignore_index=IGNORE_INDEX,
)

_STRIPE_COLOURS = np.array([[225, 215, 55], [70, 65, 20]], dtype=np.float32)
_CHECKER_COLOURS = np.array([[205, 55, 205], [235, 200, 235]], dtype=np.float32)
_SOLID_COLOUR = np.array([240, 150, 40], dtype=np.float32)
_NOISE_SIGMA = 8.0
LOCAL_OBJECT_MIN_SIDE = 0.12  # the smallest local object's height and width, as a fraction of the image's


class _Names(Sequence):
    """Lazy list of sample names, ``f"{split}_{index:06d}"``."""

    def __init__(self, split: str, n: int) -> None:
        self.split, self.n = split, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"{self.split}_{i:06d}"


def _ellipse_mask(h: int, w: int) -> np.ndarray:
    y = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (h / 2)
    x = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2)
    return y[:, None] ** 2 + x[None, :] ** 2 <= 1.0


def _uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi] (inclusive); ``lo`` when the range is empty."""
    return lo if hi <= lo else int(rng.integers(lo, hi + 1))


def paint_background(size: tuple[int, int], scene: dict) -> np.ndarray:
    """Float ``(H, W, 3)`` image of a scene's background: its tinted level (``scene["background"]``,
    RGB) plus a linear gradient (``scene["gradient"]``, vertical and horizontal amplitude)."""
    H, W = size
    gy = np.linspace(-1.0, 1.0, H, dtype=np.float32)[:, None] * np.float32(scene["gradient"][0])
    gx = np.linspace(-1.0, 1.0, W, dtype=np.float32)[None, :] * np.float32(scene["gradient"][1])
    return (gy + gx)[:, :, None] + scene["background"].astype(np.float32)


def paint_local_object(image: np.ndarray, label: np.ndarray, cls: int, box: tuple[int, int, int, int],
                       ellipse: bool, params: dict) -> None:
    """Paint a locally recognisable object (stripes, checker or solid; ``params`` from the
    layout) into float ``image`` and ``label`` at ``box`` = (y, x, h, w), in place."""
    y, x, h, w = box
    mask = _ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)
    yy = np.arange(y, y + h)[:, None]
    xx = np.arange(x, x + w)[None, :]
    if cls == STRIPES:
        o = params["orientation"]
        coord = yy + 0 * xx if o == 0 else xx + 0 * yy if o == 1 else yy + xx if o == 2 else yy - xx + image.shape[1]
        colour = _STRIPE_COLOURS[((coord + params["phase"]) // max(2, params["period"] // 2)) % 2]
    elif cls == CHECKER:
        c = params["cell"]
        colour = _CHECKER_COLOURS[((yy // c) + (xx // c)) % 2]
    else:
        colour = np.broadcast_to(_SOLID_COLOUR, (h, w, 3))
    patch = image[y:y + h, x:x + w]
    patch[mask] = colour[mask]
    label[y:y + h, x:x + w][mask] = cls


class RenderedDataset(Dataset):
    """Samples rendered on demand, each a pure function of ``(seed, split, index)``: what the
    synthetic datasets share. A subclass implements ``render(index) -> (image(s), label(s))``.

    ``dataset[index]`` is ``{"image", "label", "name": f"{split}_{index:06d}"}`` after
    ``transform`` (``default_transform`` when None), plus :meth:`extras`.
    """

    default_transform = staticmethod(normalize)
    default_train_samples = 100_000  # split "train"; any other split: default_eval_samples
    default_eval_samples = 64
    min_size = 8

    def __init__(self, split: str, num_samples: int | None, size: tuple[int, int], seed: int,
                 transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty string, got {split!r}")
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < self.min_size:
            raise ValueError(f"size must be (H, W) with both >= {self.min_size}, got {size!r}")
        if num_samples is None:
            num_samples = self.default_train_samples if split == "train" else self.default_eval_samples
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.split = split
        self.size: tuple[int, int] = size  # type: ignore[assignment]
        self.seed = int(seed)
        self.transform = transform
        self.samples = _Names(split, int(num_samples))
        self._split_key = zlib.crc32(split.encode())

    def __len__(self) -> int:
        return len(self.samples)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def extras(self, index: int) -> dict:
        """More entries of ``dataset[index]`` (none here)."""
        return {}

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, label = self.render(index)
        transform = self.transform if self.transform is not None else self.default_transform
        image_t, label_t = transform(image, label)
        return {"image": image_t, "label": label_t, "name": self.samples[index], **self.extras(index)}

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Same as :meth:`render` (the name the evaluator uses)."""
        return self.render(index)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, self._split_key, int(index)])


class SyntheticContextDataset(RenderedDataset):
    """Scenes whose grey objects are classified by the colour of a distant key marker.

    See the module docstring for the design. ``render(index)`` / ``load(index)`` return
    ``(image uint8 (H, W, 3) RGB, label uint8 (H, W))``; ``dataset[index]`` returns
    ``{"image": float (3, H, W), "label": int64 (H, W), "name": f"{split}_{index:06d}"}`` after
    ``transform`` (ImageNet normalisation when None). Any index in ``range(num_samples)`` is
    valid; samples are generated on demand, deterministically from ``(seed, split, index)``.
    """

    INFO: DatasetInfo = SYNTHETIC_INFO
    LOCAL_CLASSES = LOCAL_CLASSES
    CONTEXT_CLASSES = CONTEXT_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int | None = None,
        size: tuple[int, int] = (192, 192),
        seed: int = 0,
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]] | None = None,
        key_size: float = 0.25,
        key_label: str = "class",
        key_gap: float = 0.2,
        aligned_prob: float = 0.5,
    ) -> None:
        super().__init__(split, num_samples, size, seed, transform)
        if key_label not in ("class", "ignore"):
            raise ValueError(f"key_label must be 'class' or 'ignore', got {key_label!r}")
        if not 0 < key_size < 0.5:
            raise ValueError(f"key_size must be in (0, 0.5), got {key_size!r}")
        self.key_size = float(key_size)
        self.key_gap = float(key_gap)
        if not 0 <= aligned_prob <= 1:
            raise ValueError(f"aligned_prob must be in [0, 1], got {aligned_prob!r}")
        self.aligned_prob = float(aligned_prob)
        self.key_label = key_label
        self.info = self.INFO

    # ------------------------------------------------------------------------------------------
    def layout(self, index: int) -> dict:
        """The scene description of sample ``index`` (what :meth:`render` paints)."""
        return self._layout(self.rng(index))

    def _layout(self, rng: np.random.Generator) -> dict:
        H, W = self.size
        short = min(H, W)
        # Key marker in a corner zone: centre at 5..32% from the chosen edges.
        k = max(3, round(self.key_size * short))
        top, left = bool(rng.integers(2)), bool(rng.integers(2))

        def key_start(n: int, near_start: bool) -> int:
            lo = 0.03 * n
            start = round(rng.uniform(lo, max(lo, 0.35 * n - k)))
            start = int(np.clip(start, 0, n - k))
            return start if near_start else n - k - start

        ky, kx = key_start(H, top), key_start(W, left)
        # Grey objects: rows and columns beyond the key's band plus a gap, on the far side.
        gap_y, gap_x = max(1, round(self.key_gap * H)), max(1, round(self.key_gap * W))
        if top:
            ry0, ry1 = min(ky + k + gap_y, H - 2), H
        else:
            ry0, ry1 = 0, max(ky - gap_y, 2)
        if left:
            rx0, rx1 = min(kx + k + gap_x, W - 2), W
        else:
            rx0, rx1 = 0, max(kx - gap_x, 2)
        region = (ry0, ry1, rx0, rx1)

        context = int(rng.integers(len(CONTEXT_CLASSES)))
        grey = float(rng.uniform(140, 200))
        objects = []
        rh, rw = ry1 - ry0, rx1 - rx0
        # With probability ``aligned_prob`` the first grey object is centred on the key's rows
        # (or columns) instead, still beyond the gap along the other axis: one criss-cross hop
        # (R=1) reaches the key from there.
        aligned = int(rng.integers(1, 3)) if rng.random() < self.aligned_prob else 0  # 1: rows, 2: columns
        for i in range(int(rng.integers(1, 4))):
            h = _uniform_int(rng, max(2, round(0.3 * rh)), max(2, round(0.75 * rh)))
            w = _uniform_int(rng, max(2, round(0.3 * rw)), max(2, round(0.75 * rw)))
            h, w = min(h, rh), min(w, rw)
            y = ry0 + _uniform_int(rng, 0, rh - h)
            x = rx0 + _uniform_int(rng, 0, rw - w)
            if i == 0 and aligned == 1:
                y = int(np.clip(ky + _uniform_int(rng, 0, k - 1) - h // 2, 0, H - h))
            elif i == 0 and aligned == 2:
                x = int(np.clip(kx + _uniform_int(rng, 0, k - 1) - w // 2, 0, W - w))
            objects.append(("grey", (y, x, h, w), bool(rng.integers(2)), {}))

        locals_ = self._local_objects(rng)
        background = rng.uniform(25, 95) + rng.uniform(-15, 15, size=3)
        gradient = rng.uniform(-20, 20, size=2)
        return {
            "key": (ky, kx, k),
            "key_class": CONTEXT_CLASSES[context],
            "grey_region": region,
            "grey": grey,
            "grey_objects": objects,
            "aligned": aligned,
            "local_objects": locals_,
            "background": background,
            "gradient": gradient,
        }

    def _local_objects(self, rng: np.random.Generator) -> list[tuple]:
        """1-3 locally recognisable objects: ``(class, (y, x, h, w), ellipse, params)``."""
        H, W = self.size
        locals_ = []
        for _ in range(int(rng.integers(1, 4))):
            cls = LOCAL_CLASSES[int(rng.integers(len(LOCAL_CLASSES)))]
            h = _uniform_int(rng, max(2, round(LOCAL_OBJECT_MIN_SIDE * H)), max(2, round(0.3 * H)))
            w = _uniform_int(rng, max(2, round(LOCAL_OBJECT_MIN_SIDE * W)), max(2, round(0.3 * W)))
            y, x = _uniform_int(rng, 0, H - h), _uniform_int(rng, 0, W - w)
            params = {
                "period": _uniform_int(rng, 4, 9),
                "orientation": int(rng.integers(4)),
                "cell": _uniform_int(rng, 2, 5),
                "phase": int(rng.integers(16)),
            }
            locals_.append((cls, (y, x, h, w), bool(rng.integers(2)), params))
        return locals_

    def _paint_background_and_locals(self, scene: dict) -> tuple[np.ndarray, np.ndarray]:
        """Float image and label of the scene's background (a tinted level plus a linear
        gradient) and its locally recognisable objects."""
        image = paint_background(self.size, scene)
        label = np.zeros(self.size, dtype=np.uint8)
        for cls, box, ellipse, params in scene["local_objects"]:
            paint_local_object(image, label, cls, box, ellipse, params)
        return image, label

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, label uint8 (H, W))`` of sample ``index``."""
        rng = self.rng(index)
        scene = self._layout(rng)
        H, W = self.size
        image, label = self._paint_background_and_locals(scene)

        # Grey context objects: one appearance for all three classes.
        cls = scene["key_class"]
        for _, (y, x, h, w), ellipse, _ in scene["grey_objects"]:
            mask = _ellipse_mask(h, w) if ellipse else np.ones((h, w), dtype=bool)
            image[y:y + h, x:x + w][mask] = scene["grey"]
            label[y:y + h, x:x + w][mask] = cls

        # Key marker: light frame around the key colour; ignored in the labels.
        ky, kx, k = scene["key"]
        image[ky:ky + k, kx:kx + k] = KEY_FRAME_COLOUR
        b = 1 if k < 8 else 2
        image[ky + b:ky + k - b, kx + b:kx + k - b] = KEY_COLOURS[CONTEXT_CLASSES.index(cls)]
        label[ky:ky + k, kx:kx + k] = cls if self.key_label == "class" else IGNORE_INDEX

        image += rng.standard_normal((H, W, 3), dtype=np.float32) * np.float32(_NOISE_SIGMA)
        np.clip(image, 0, 255, out=image)
        return image.astype(np.uint8), label

    def key_shares_line(self, index: int) -> bool:
        """Whether any pixel of the context class shares a row or a column with the key marker
        of sample ``index`` (False by construction, except for tiny images)."""
        _, label = self.render(index)
        ky, kx, k = self.layout(index)["key"]
        ctx = np.isin(label, CONTEXT_CLASSES)
        ctx[ky:ky + k, kx:kx + k] = False
        return bool(ctx[ky:ky + k].any() or ctx[:, kx:kx + k].any())
