"""Your own data: a folder of images, a folder of masks and a class file.

::

    root/classes.txt                 one class per line: ``name`` or ``name R G B``
    root/images/[{split}/]*.jpg|jpeg|png|bmp|tif|tiff
    root/masks/[{split}/]<image stem>.png      class index per pixel (grey or palette PNG)

With ``images/{split}`` folders the split picks one; without them ``images/`` and ``masks/`` are
used for every split. Without a ``masks`` folder the images are read unlabelled (prediction only).

In ``classes.txt`` blank lines and ``#`` comments are skipped; a name may contain spaces; classes
without a colour get one from the PASCAL VOC colour map (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ccnet.data.base import PairTransform, SegmentationDataset, pair_by_stem, require_dir
from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError
from ccnet.data.voc import voc_palette

__all__ = ["IMAGE_EXTENSIONS", "FolderDataset", "read_class_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
LAYOUT = "root/images/[{split}/]*.jpg|png|... with masks root/masks/[{split}/]<stem>.png and root/classes.txt"


def _is_int(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def read_class_file(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and colours from a class file; malformed lines raise a DatasetError with the
    file and line number."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class file not found; expected one class per line, 'name' or 'name R G B'")
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        where = f"{path}:{number}"
        if len(tokens) >= 4 and all(_is_int(t) for t in tokens[-3:]):
            rgb = tuple(int(t) for t in tokens[-3:])
            if not all(0 <= c <= 255 for c in rgb):
                raise DatasetError(f"{where}: colour {rgb} outside 0..255")
            name, colour = " ".join(tokens[:-3]), rgb
        elif len(tokens) > 1 and all(_is_int(t) for t in tokens[1:]):
            raise DatasetError(f"{where}: expected 'name' or 'name R G B', got {line!r}")
        else:
            name, colour = " ".join(tokens), None
        if name in names:
            raise DatasetError(f"{where}: class {name!r} listed twice (first on an earlier line)")
        names.append(name)
        colours.append(colour)  # type: ignore[arg-type]
    if not names:
        raise DatasetError(f"{path}: no classes; expected one class per line, 'name' or 'name R G B'")
    generated = voc_palette(len(names))
    palette = tuple(colour if colour is not None else generated[i] for i, colour in enumerate(colours))
    return tuple(names), palette


class FolderDataset(SegmentationDataset):
    """Images and index masks from a folder (see the module docstring for the layout).

    Args:
        root: the dataset folder.
        split: picks ``images/{split}`` when such folders exist; ignored otherwise.
        transform: see `SegmentationDataset`.
        ignore_index: mask value to ignore (default 255); must not be a class index.
        classes: class names, instead of reading ``root/classes.txt``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: PairTransform | None = None,
        *,
        ignore_index: int = 255,
        classes: Sequence[str] | None = None,
    ) -> None:
        root = Path(root)
        images_root = require_dir(root / "images", LAYOUT)
        if classes is not None:
            names, palette = tuple(classes), voc_palette(len(classes))
        else:
            names, palette = read_class_file(root / "classes.txt")
        if not 0 <= ignore_index <= 255 or ignore_index < len(names):
            raise DatasetError(
                f"{root}: ignore_index {ignore_index} must lie in {len(names)}..255 (above the {len(names)} classes)"
            )
        info = DatasetInfo(name=root.name or "folder", class_names=names, palette=palette, ignore_index=ignore_index)

        image_dir, mask_dir = images_root, root / "masks"
        if (images_root / split).is_dir():
            image_dir, mask_dir = images_root / split, mask_dir / split
        else:
            splits = sorted(p.name for p in images_root.iterdir() if p.is_dir())
            if splits:
                raise DatasetError(f"{images_root / split}: split folder not found (found {', '.join(splits)})")
        images: dict[str, Path] = {}
        for path in sorted(image_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                if path.stem in images:
                    raise DatasetError(f"{path}: same name as {images[path.stem]}; image stems must be unique")
                images[path.stem] = path
        labels = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else None
        samples = pair_by_stem(images, labels, image_dir, mask_dir, LAYOUT)
        super().__init__(samples, info, transform)
        self.root, self.split = root, split
