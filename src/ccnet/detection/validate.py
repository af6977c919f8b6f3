"""Whole-file checks of COCO instance annotations and COCO results, run once when a file is opened.

pycocotools indexes whatever it is given: an image without ``height`` fails only when that image
is drawn (possibly hours into training), a result with a 3-number ``bbox`` fails deep inside
``loadRes``. Here every entry is checked up front. What the reference loaders refuse is refused
with one line naming the file, the entry (index and id) and the field: image entries without
``id`` / ``file_name`` / ``height`` / ``width`` (Detectron2's ``load_coco_json`` reads them
unconditionally), annotations of a category that is not in ``categories`` (Detectron2 raises),
duplicate ids (Detectron2 asserts unique annotation ids), malformed boxes and segmentations.

What the reference loaders leave out of the training targets is left out here too, counted, and
reported in one warning per file with the count of each reason:

* annotations whose ``image_id`` is not an image (both loaders walk the images, so never reach them);
* boxes with zero or negative width or height, and boxes wholly outside their image (torchvision's
  ``ConvertCocoPolysToMask`` clips boxes to the image and keeps those with ``x2 > x1, y2 > y1``;
  Detectron2 clips and drops empty boxes);
* polygons of odd length or under 3 points (Detectron2 drops them, and the instance when none is
  left); polygons wholly outside their image (their mask would be empty) likewise.

Crowd regions (``iscrowd: 1``) are not training targets; only the checks that apply to every
annotation (image, category, structure) concern them.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccnet.data.io import DatasetError

__all__ = ["CocoCheck", "check_instances", "check_results", "warn_dropped"]

ORPHAN = "annotations whose image_id is not an image"
EMPTY_BOX = "boxes with zero or negative width or height"
BOX_OUTSIDE = "boxes wholly outside their image"
BAD_POLYGON = "polygons of odd length or under 3 points"
NO_POLYGON = "annotations left without a valid polygon"
POLYGON_OUTSIDE = "polygons wholly outside their image"


@dataclass
class CocoCheck:
    """What `check_instances` found in a valid file: the annotations (by id) to leave out of
    the training targets with their reason, the polygons to use instead of an annotation's own
    (invalid ones removed), and the count of each reason (polygons and annotations)."""

    dropped: dict[int, str] = field(default_factory=dict)
    polygons: dict[int, list[list[float]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _numbers(values: Any) -> bool:
    """Whether ``values`` is a list of finite numbers; at C speed (``sum``), as COCO files hold
    tens of millions of polygon coordinates."""
    if not isinstance(values, list):
        return False
    try:
        return math.isfinite(sum(values))
    except TypeError:
        return False


class _Entry:
    """``annotation #3 (id 17)``: built only when an error names it (files hold ~10^6 entries)."""

    __slots__ = ("id_key", "index", "item", "kind")

    def __init__(self, kind: str, index: int, item: Any, id_key: str = "id") -> None:
        self.kind, self.index, self.item, self.id_key = kind, index, item, id_key

    def __str__(self) -> str:
        ident = self.item.get(self.id_key) if isinstance(self.item, dict) else None
        return f"{self.kind} #{self.index}" + (f" ({self.id_key} {ident})" if ident is not None else "")

    def __format__(self, spec: str) -> str:  # what f-strings call
        return format(str(self), spec)


def _check_box(path: Path, where: _Entry, bbox: Any) -> None:
    if not (isinstance(bbox, list) and len(bbox) == 4 and _numbers(bbox)):
        raise DatasetError(f"{path}: {where}: 'bbox' must be 4 numbers [x, y, width, height], got {bbox!r:.80}")


def _check_segmentation(path: Path, where: _Entry, segmentation: Any, image: dict[str, Any] | None) -> None:
    """Polygons (a list of coordinate lists) or RLE (``size`` [h, w] and ``counts``, a string or
    integer run lengths) of the image's size."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not _numbers(polygon):
                raise DatasetError(f"{path}: {where}: 'segmentation' polygons must be lists of numbers, "
                                   f"got {polygon!r:.80}")
        return
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise DatasetError(f"{path}: {where}: 'segmentation' must be polygons or an RLE with 'size' and 'counts', "
                           f"got {segmentation!r:.80}")
    size, counts = segmentation["size"], segmentation["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise DatasetError(f"{path}: {where}: 'segmentation' RLE 'size' must be [height, width], got {size!r:.80}")
    if not (isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(v) and v >= 0 for v in counts))):
        raise DatasetError(f"{path}: {where}: 'segmentation' RLE 'counts' must be a string or run lengths, "
                           f"got {counts!r:.80}")
    if image is not None and size != [image["height"], image["width"]]:
        raise DatasetError(f"{path}: {where}: 'segmentation' RLE size {size} is not its image's "
                           f"[height, width] {[image['height'], image['width']]}")


def _check_images(path: Path, images: list[Any]) -> dict[int, dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    for i, image in enumerate(images):
        where = _Entry("image", i, image)
        if not isinstance(image, dict):
            raise DatasetError(f"{path}: {where}: expected an object, got {type(image).__name__}")
        for key in ("id", "file_name", "height", "width"):
            if key not in image:
                raise DatasetError(f"{path}: {where}: no {key!r}")
        if not _is_int(image["id"]):
            raise DatasetError(f"{path}: {where}: 'id' must be an integer, got {image['id']!r}")
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise DatasetError(f"{path}: {where}: 'file_name' must be a non-empty string, got {image['file_name']!r}")
        for key in ("height", "width"):
            if not _is_int(image[key]) or image[key] < 1:
                raise DatasetError(f"{path}: {where}: {key!r} must be a positive integer, got {image[key]!r}")
        if image["id"] in by_id:
            raise DatasetError(f"{path}: {where}: 'id' {image['id']} is used by an earlier image too")
        by_id[image["id"]] = image
    return by_id


def _check_categories(path: Path, categories: list[Any]) -> set[int]:
    ids: set[int] = set()
    for i, category in enumerate(categories):
        where = _Entry("category", i, category)
        if not isinstance(category, dict) or not _is_int(category.get("id")) or "name" not in category:
            raise DatasetError(f"{path}: {where}: a category needs an integer 'id' and a 'name'")
        if category["id"] in ids:
            raise DatasetError(f"{path}: {where}: 'id' {category['id']} is used by an earlier category too")
        ids.add(category["id"])
    return ids


def _polygon_outside(polygon: list[float], height: int, width: int) -> bool:
    xs, ys = polygon[0::2], polygon[1::2]
    return max(xs) <= 0 or min(xs) >= width or max(ys) <= 0 or min(ys) >= height


def _training_drop(ann: dict[str, Any], image: dict[str, Any], check: CocoCheck) -> str | None:
    """Why a non-crowd annotation is not a training target (None: it is one); odd polygons
    are counted and replaced in ``check.polygons``."""
    x, y, w, h = ann["bbox"]
    if w <= 0 or h <= 0:
        return EMPTY_BOX
    height, width = image["height"], image["width"]
    if min(float(width), x + w) <= max(0.0, x) or min(float(height), y + h) <= max(0.0, y):
        return BOX_OUTSIDE
    segmentation = ann["segmentation"]
    if not isinstance(segmentation, list):
        return None
    valid = [p for p in segmentation if len(p) % 2 == 0 and len(p) >= 6]
    if len(valid) < len(segmentation):
        check.counts[BAD_POLYGON] += len(segmentation) - len(valid)
        if not valid:
            return NO_POLYGON
    inside = [p for p in valid if not _polygon_outside(p, height, width)]
    if len(inside) < len(valid):
        check.counts[POLYGON_OUTSIDE] += len(valid) - len(inside)
        if not inside:
            return NO_POLYGON
    if len(inside) < len(segmentation):
        check.polygons[ann["id"]] = inside
    return None


def check_instances(path: str | Path, dataset: dict[str, Any]) -> CocoCheck:
    """Check every image, category and annotation of a COCO instances object read from ``path``:
    a `DatasetError` naming the entry and field for what the reference loaders refuse, else
    what to leave out of the training targets (see the module docstring)."""
    path = Path(path)
    images = _check_images(path, dataset["images"])
    categories = _check_categories(path, dataset["categories"])
    check = CocoCheck()
    seen: set[int] = set()
    for i, ann in enumerate(dataset["annotations"]):
        where = _Entry("annotation", i, ann)
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: {where}: expected an object, got {type(ann).__name__}")
        missing = [k for k in ("id", "image_id", "category_id", "bbox", "segmentation") if k not in ann]
        if missing:
            raise DatasetError(f"{path}: {where}: no {', '.join(map(repr, missing))}")
        if not _is_int(ann["id"]):
            raise DatasetError(f"{path}: {where}: 'id' must be an integer, got {ann['id']!r}")
        if ann["id"] in seen:
            raise DatasetError(f"{path}: {where}: 'id' {ann['id']} is used by an earlier annotation too")
        seen.add(ann["id"])
        if ann["category_id"] not in categories:
            raise DatasetError(f"{path}: {where}: 'category_id' {ann['category_id']!r} is not in 'categories'")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DatasetError(f"{path}: {where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
        _check_box(path, where, ann["bbox"])
        image = images.get(ann["image_id"])
        _check_segmentation(path, where, ann["segmentation"], image)
        if image is None:
            reason: str | None = ORPHAN
        elif ann.get("iscrowd", 0):
            reason = None
        else:
            reason = _training_drop(ann, image, check)
        if reason is not None:
            check.dropped[ann["id"]] = reason
            check.counts[reason] += 1
    return check


def warn_dropped(path: str | Path, check: CocoCheck, *, evaluation: bool = False) -> None:
    """One warning naming the file and the count of each reason, if anything was left out."""
    if not check.counts:
        return
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(check.counts.items(), key=lambda c: -c[1]))
    scored = "; COCOeval scores against the file as it is" if evaluation else ""
    warnings.warn(f"{path}: left {len(check.dropped)} annotations out of the training targets, as torchvision's and "
                  f"Detectron2's loaders do ({reasons}){scored}", stacklevel=2)


def check_results(path: str | Path, results: Any, image_ids: set[int], category_ids: set[int]) -> list[dict[str, Any]]:
    """A COCO results list (``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``, optional
    ``segmentation`` RLE) read from ``path``, every entry checked against the annotations' images
    and categories; a `DatasetError` names the first bad entry and field."""
    path = Path(path)
    if not isinstance(results, list):
        raise DatasetError(f"{path}: expected a list of COCO results, got {type(results).__name__}")
    for i, result in enumerate(results):
        where = _Entry("result", i, result, "image_id")
        if not isinstance(result, dict):
            raise DatasetError(f"{path}: {where}: expected an object, got {type(result).__name__}")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in result:
                raise DatasetError(f"{path}: {where}: no {key!r}")
        if result["image_id"] not in image_ids:
            raise DatasetError(f"{path}: {where}: 'image_id' {result['image_id']!r} is not an image of the annotations")
        if result["category_id"] not in category_ids:
            raise DatasetError(f"{path}: {where}: 'category_id' {result['category_id']!r} is not in the "
                               f"annotations' categories")
        _check_box(path, where, result["bbox"])
        if result["bbox"][2] < 0 or result["bbox"][3] < 0:
            raise DatasetError(f"{path}: {where}: 'bbox' has a negative width or height: {result['bbox']}")
        if not _is_number(result["score"]):
            raise DatasetError(f"{path}: {where}: 'score' must be a number, got {result['score']!r:.80}")
        if "segmentation" in result:
            segmentation = result["segmentation"]
            if not isinstance(segmentation, dict):
                raise DatasetError(f"{path}: {where}: 'segmentation' of a result must be an RLE, got "
                                   f"{segmentation!r:.80}")
            _check_segmentation(path, where, segmentation, None)
            if not isinstance(segmentation["counts"], str):
                raise DatasetError(f"{path}: {where}: 'segmentation' of a result must be a compressed RLE "
                                   f"('counts' a string, as pycocotools.mask.encode writes it)")
    return results
