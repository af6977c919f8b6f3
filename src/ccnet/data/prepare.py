"""One-off dataset preparation (``ccnet prepare ...``): files the readers prefer or need.

Every output file is written atomically (temporary file, then rename), so an interrupted run can
simply be run again. A file in the way with other content than the one to be written (the
user's own train ids, a downloaded ``SegmentationClassAug``, an edited ``train_aug.txt``) is never
replaced unless ``overwrite=True`` (``ccnet prepare --overwrite``): the whole run is refused
first, before anything is written (`refuse_to_replace`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ccnet.data.cityscapes import CITYSCAPES_INFO, LABEL_IDS_SUFFIX, TRAIN_IDS_SUFFIX, cityscapes_label_map
from ccnet.data.io import DatasetError, read_label, write_label
from ccnet.data.voc import VOC_INFO, find_voc2012
from ccnet.files import atomic_path, atomic_write_text

__all__ = ["find_sbd", "prepare_cityscapes", "prepare_voc_aug", "read_sbd_mat", "refuse_to_replace"]


def _run(function: Callable[[Path], object], paths: Iterable[Path], workers: int | None) -> None:
    """Apply ``function`` to every path; threads, as PNG and zlib work releases the GIL."""
    paths = list(paths)
    workers = max(1, workers or min(8, os.cpu_count() or 1))
    if workers == 1:
        for path in paths:
            function(path)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(function, paths):
            pass


def refuse_to_replace(planned: Iterable[tuple[Path, Callable[[], bool]]], workers: int | None = None) -> None:
    """Refuse, in one line naming the first such file, when any ``path`` of ``planned``
    (``(path to write, whether the existing file already holds that content)``) exists with other
    content. Files that hold what would be written (an earlier or interrupted run) are fine."""
    existing = [(path, same) for path, same in planned if path.exists()]
    if not existing:
        return
    differs: list[Path] = []

    def compare(item: tuple[Path, Callable[[], bool]]) -> None:
        path, same = item
        try:
            equal = path.is_file() and same()
        except (OSError, ValueError):  # unreadable: not what we would write either
            equal = False
        if not equal:
            differs.append(path)

    _run(compare, existing, workers)  # type: ignore[arg-type]
    if differs:
        first = sorted(differs)[0]
        others = f" (and {len(differs) - 1} more files)" if len(differs) > 1 else ""
        raise DatasetError(f"{first}: already exists with other content{others}; not replaced "
                           f"(--overwrite replaces what ccnet prepare writes)")


def _same_label(path: Path, label: Callable[[], np.ndarray]) -> Callable[[], bool]:
    return lambda: np.array_equal(read_label(path), label())


def _check_range(path: Path, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> None:
    present = np.flatnonzero(np.bincount(label.reshape(-1), minlength=256))
    bad = present[(present >= num_classes) & (present != ignore_index)]
    if bad.size:
        raise DatasetError(f"{path}: label values {bad.tolist()} outside 0..{num_classes - 1} (ignore {ignore_index})")


# ----------------------------------------------------------------------------- Cityscapes


def prepare_cityscapes(root: str | Path, workers: int | None = None, *, overwrite: bool = False) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png`` under ``root/gtFine``.

    Train ids come from the label table of ``cityscapesscripts`` (ids without a train id -> 255),
    the same result as the official ``createTrainIdLabelImgs`` but from the PNGs, not the JSON
    polygons. Existing train-id files with other ids are refused unless ``overwrite``. Returns
    the number of files written.
    """
    gt = Path(root) / "gtFine"
    if not gt.is_dir():
        raise DatasetError(f"{gt}: directory not found; expected root/gtFine/{{split}}/{{city}}/*{LABEL_IDS_SUFFIX}")
    sources = sorted(gt.glob(f"*/*/*{LABEL_IDS_SUFFIX}"))
    if not sources:
        raise DatasetError(f"{gt}: no *{LABEL_IDS_SUFFIX} files found under {{split}}/{{city}}/")
    lut = cityscapes_label_map()

    def target(source: Path) -> Path:
        return source.with_name(source.name[: -len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX)

    def train_ids(source: Path) -> np.ndarray:
        ids = lut[read_label(source)]
        _check_range(source, ids, CITYSCAPES_INFO.num_classes)
        return ids

    if not overwrite:
        refuse_to_replace(((target(s), _same_label(target(s), lambda s=s: train_ids(s))) for s in sources), workers)
    _run(lambda source: write_label(target(source), train_ids(source)), sources, workers)
    return len(sources)


# ----------------------------------------------------------------------------- PASCAL VOC + SBD


def find_sbd(sbd_root: str | Path) -> Path:
    """SBD's ``dataset`` folder (holding ``cls/``, ``train.txt``, ``val.txt``) under ``sbd_root``:
    ``sbd_root/dataset``, ``sbd_root/benchmark_RELEASE/dataset`` or ``sbd_root`` itself."""
    sbd_root = Path(sbd_root)
    for candidate in (sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset", sbd_root):
        if (candidate / "cls").is_dir():
            return candidate
    raise DatasetError(f"{sbd_root}: no SBD dataset/cls folder found; expected benchmark_RELEASE/dataset/cls/*.mat")


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """The class map (uint8, H x W, 0..20) of an SBD ``cls/*.mat`` file (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(mat["GTcls"].Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise DatasetError(f"{path}: cannot read SBD GTcls.Segmentation ({error})") from error
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise DatasetError(f"{path}: GTcls.Segmentation has shape {segmentation.shape}; expected (H, W)")
    if segmentation.min() < 0 or segmentation.max() > 255:
        raise DatasetError(
            f"{path}: GTcls.Segmentation values {segmentation.min()}..{segmentation.max()} not in 0..255"
        )
    label = segmentation.astype(np.uint8)
    _check_range(path, label, VOC_INFO.num_classes)
    return label


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def prepare_voc_aug(voc_root: str | Path, sbd_root: str | Path, workers: int | None = None, *,
                    overwrite: bool = False) -> int:
    """Build VOC's SBD-augmented training set, as DeepLab and mmsegmentation use it.

    * ``SegmentationClassAug/{id}.png``: every SBD ``cls/*.mat`` as a grey index PNG, then VOC's
      own ``SegmentationClass`` labels (more precise, so they win where both exist; palette
      indices kept, boundary 255 kept);
    * ``ImageSets/Segmentation/train_aug.txt``: (SBD train + SBD val + VOC train) minus VOC val,
      sorted (10582 ids for the full datasets).

    Existing files with other content are refused unless ``overwrite``. Returns the number of ids
    in ``train_aug.txt``.
    """
    voc = find_voc2012(voc_root)
    sbd = find_sbd(sbd_root)
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_ids(lists / "train.txt"), _read_ids(lists / "val.txt")
    sbd_ids = _read_ids(sbd / "train.txt") + _read_ids(sbd / "val.txt")

    out = voc / "SegmentationClassAug"
    mats = sorted((sbd / "cls").glob("*.mat"))
    voc_labels = voc / "SegmentationClass"
    if not voc_labels.is_dir():
        raise DatasetError(f"{voc_labels}: directory not found; expected VOC2012/SegmentationClass/*.png")
    pngs = sorted(voc_labels.glob("*.png"))
    ids = sorted(set(sbd_ids + voc_train) - set(voc_val))
    train_aug = "".join(f"{i}\n" for i in ids)
    if not overwrite:  # what each label will hold at the end: VOC's own where it has one, else SBD's
        final = {out / f"{mat.stem}.png": (lambda mat=mat: read_sbd_mat(mat)) for mat in mats}
        final.update({out / png.name: (lambda png=png: read_label(png)) for png in pngs})
        planned = [(path, _same_label(path, label)) for path, label in final.items()]
        planned.append((lists / "train_aug.txt", lambda: (lists / "train_aug.txt").read_text() == train_aug))
        refuse_to_replace(planned, workers)
    out.mkdir(exist_ok=True)
    _run(lambda mat: write_label(out / f"{mat.stem}.png", read_sbd_mat(mat)), mats, workers)

    def copy_voc(png: Path) -> None:
        _check_range(png, read_label(png), VOC_INFO.num_classes)  # also rejects unreadable files
        with atomic_path(out / png.name) as tmp:
            shutil.copyfile(png, tmp)

    _run(copy_voc, pngs, workers)

    for sample_id in ids:
        if not (out / f"{sample_id}.png").is_file():
            raise DatasetError(f"{out / f'{sample_id}.png'}: no SBD or VOC label for {sample_id} (in the train lists)")
    atomic_write_text(lists / "train_aug.txt", train_aug)
    return len(ids)
