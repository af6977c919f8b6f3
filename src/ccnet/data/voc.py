"""PASCAL VOC 2012 segmentation, 21 classes, with the optional SBD augmented training set.

::

    root/VOCdevkit/VOC2012/            (or root = VOC2012, or root/VOC2012)
        JPEGImages/{id}.jpg
        SegmentationClass/{id}.png     palette PNGs: the palette index is the class, 255 = boundary (ignored)
        ImageSets/Segmentation/{train,val,trainval,test}.txt
        SegmentationClassAug/{id}.png  } SBD augmented set (DeepLab / mmsegmentation layout),
        ImageSets/Segmentation/train_aug.txt  } made by ``ccnet prepare voc-aug``; split "train_aug" or "aug"
"""

from __future__ import annotations

from pathlib import Path

from ccnet.data.base import PairTransform, Sample, SegmentationDataset, read_id_list, require_samples
from ccnet.data.info import DatasetInfo
from ccnet.data.io import DatasetError

__all__ = ["VOC_INFO", "PascalVOC", "find_voc2012", "voc_palette"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (``labelcolormap.m`` of the VOC devkit) for the first ``num_classes``
    labels: the bits of the label spread over the high bits of R, G and B. Distinct for 256 labels,
    so it doubles as a deterministic palette for any label set."""
    colours = []
    for label in range(num_classes):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return tuple(colours)


VOC_INFO = DatasetInfo(name="voc", class_names=VOC_CLASSES, palette=voc_palette(21), ignore_index=255)

LAYOUT = (
    "root/VOCdevkit/VOC2012 (or root = VOC2012) with JPEGImages/*.jpg, SegmentationClass/*.png "
    "and ImageSets/Segmentation/{split}.txt"
)
AUG_SPLITS = ("train_aug", "aug")
AUG_LISTS = ("train_aug.txt", "trainaug.txt")  # ours, then mmsegmentation's name for the same list


def find_voc2012(root: str | Path) -> Path:
    """The VOC2012 folder under ``root`` (``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or ``root``)."""
    root = Path(root)
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(f"{root}: no VOC2012 folder with JPEGImages found; expected {LAYOUT}")


class PascalVOC(SegmentationDataset):
    """PASCAL VOC 2012. Splits ``train``, ``val``, ``trainval``, ``test`` (no labels) and
    ``train_aug`` / ``aug`` (10582 images with SBD labels)."""

    info = VOC_INFO

    def __init__(self, root: str | Path, split: str, transform: PairTransform | None = None) -> None:
        voc = find_voc2012(root)
        lists = voc / "ImageSets" / "Segmentation"
        if split in AUG_SPLITS:
            list_file = next((lists / name for name in AUG_LISTS if (lists / name).is_file()), None)
            if list_file is None:
                raise DatasetError(
                    f"{lists / AUG_LISTS[0]}: SBD augmented split list not found; create it and SegmentationClassAug/ "
                    "from the SBD release (benchmark_RELEASE) with `ccnet prepare voc-aug VOC_ROOT SBD_ROOT`"
                )
            label_dir: Path | None = voc / "SegmentationClassAug"
        else:
            list_file = lists / f"{split}.txt"
            if not list_file.is_file():
                raise DatasetError(f"{list_file}: split list not found; expected {LAYOUT}")
            label_dir = None if split == "test" else voc / "SegmentationClass"

        samples = []
        for sample_id in read_id_list(list_file):
            image = voc / "JPEGImages" / f"{sample_id}.jpg"
            if not image.is_file():
                raise DatasetError(f"{image}: listed in {list_file} but not found")
            label = None if label_dir is None else label_dir / f"{sample_id}.png"
            if label is not None and not label.is_file():
                raise DatasetError(f"{label}: label of {sample_id} (listed in {list_file}) not found")
            samples.append(Sample(image=image, label=label, name=sample_id))
        samples = require_samples(samples, list_file, LAYOUT)
        super().__init__(samples, VOC_INFO, transform)
        self.root, self.split = voc, split
