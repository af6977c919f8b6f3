"""Dataset preparation: Cityscapes train-id PNGs and the VOC + SBD augmented set, on tiny trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from ccnet.data import Cityscapes, DatasetError, PascalVOC, read_label
from ccnet.data.prepare import prepare_cityscapes, prepare_voc_aug, read_sbd_mat
from ccnet.data.voc import voc_palette

H, W = 8, 12


def png(path: Path, array: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array.astype(np.uint8), mode="P" if palette else None)
    if palette:
        image.putpalette([c for colour in voc_palette(256) for c in colour])
    image.save(path)


def rgb(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(path)


# ----------------------------------------------------------------------------- Cityscapes


def test_prepare_cityscapes_writes_train_ids(tmp_path):
    ids = np.array([[7, 8, 26, 0, 1, 33]] * H, dtype=np.uint8).repeat(2, axis=1)
    for split, frame in (("train", "aachen_000000_000019"), ("val", "lindau_000000_000019")):
        city = frame.split("_")[0]
        rgb(tmp_path / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png")
        png(tmp_path / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", ids)
    assert prepare_cityscapes(tmp_path, workers=2) == 2
    written = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"
    np.testing.assert_array_equal(read_label(written)[0, ::2], [0, 1, 13, 255, 255, 18])
    assert sorted(p.name for p in written.parent.iterdir()) == [
        "aachen_000000_000019_gtFine_labelIds.png",
        "aachen_000000_000019_gtFine_labelTrainIds.png",
    ]  # no temporary files left
    dataset = Cityscapes(tmp_path, "val")
    assert dataset.samples[0].label.name.endswith("_labelTrainIds.png")
    assert prepare_cityscapes(tmp_path) == 2  # idempotent


def test_prepare_cityscapes_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"gtFine: directory not found"):
        prepare_cityscapes(tmp_path)
    png(tmp_path / "gtFine/train/ulm/ulm_000000_000019_gtFine_labelIds.png", np.full((H, W), 50))
    with pytest.raises(DatasetError, match=r"ulm_000000_000019_gtFine_labelIds\.png: label values \[50\]"):
        prepare_cityscapes(tmp_path)


# ----------------------------------------------------------------------------- VOC + SBD


def sbd_mat(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation = np.full((H, W), value, dtype=np.uint8)
    savemat(path, {"GTcls": {"Segmentation": segmentation, "CategoriesPresent": np.array([value], np.uint8)}})


def voc_and_sbd(tmp_path: Path) -> tuple[Path, Path]:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    voc_train, voc_val = ["2007_000032", "2007_000039"], ["2007_000033"]
    for i, sample_id in enumerate(voc_train + voc_val + ["2008_000001", "2008_000002", "2008_000003"]):
        rgb(voc / "JPEGImages" / f"{sample_id}.jpg")
        if sample_id in voc_train + voc_val:
            boundary = np.full((H, W), 1 + i, dtype=np.uint8)
            boundary[0] = 255
            png(voc / "SegmentationClass" / f"{sample_id}.png", boundary, palette=True)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(voc_train) + "\n")
    (lists / "val.txt").write_text("\n".join(voc_val) + "\n")

    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    # SBD train overlaps VOC train (2007_000032) and VOC val (2007_000033, must be left out).
    sbd_train, sbd_val = ["2007_000032", "2008_000001", "2007_000033"], ["2008_000002"]
    for sample_id, value in zip([*sbd_train, *sbd_val, "2008_000003"], (9, 10, 11, 12, 13), strict=True):
        sbd_mat(sbd / "cls" / f"{sample_id}.mat", value)
    (sbd / "train.txt").write_text("\n".join(sbd_train) + "\n")
    (sbd / "val.txt").write_text("\n".join(sbd_val) + "\n")
    return voc, tmp_path / "benchmark_RELEASE"


def test_read_sbd_mat(tmp_path):
    sbd_mat(tmp_path / "a.mat", 20)
    label = read_sbd_mat(tmp_path / "a.mat")
    assert label.dtype == np.uint8 and label.shape == (H, W) and (label == 20).all()
    sbd_mat(tmp_path / "b.mat", 21)
    with pytest.raises(DatasetError, match=r"b\.mat: label values \[21\]"):
        read_sbd_mat(tmp_path / "b.mat")
    savemat(tmp_path / "c.mat", {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"c\.mat: cannot read SBD GTcls\.Segmentation"):
        read_sbd_mat(tmp_path / "c.mat")


def test_prepare_voc_aug(tmp_path):
    voc, sbd_root = voc_and_sbd(tmp_path)
    assert prepare_voc_aug(tmp_path, sbd_root) == 4
    ids = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert ids == ["2007_000032", "2007_000039", "2008_000001", "2008_000002"]  # VOC val 2007_000033 left out
    aug = voc / "SegmentationClassAug"
    assert int(read_label(aug / "2008_000001.png")[1, 0]) == 10  # from SBD
    assert int(read_label(aug / "2008_000003.png")[1, 0]) == 13  # converted even if unlisted
    label = read_label(aug / "2007_000032.png")  # in both: VOC's own annotation wins
    assert int(label[1, 0]) == 1 and (label[0] == 255).all()
    assert not list(aug.glob(".*"))  # no temporary files
    dataset = PascalVOC(tmp_path, "train_aug")
    assert [s.name for s in dataset.samples] == ids
    assert [int(dataset.load(i)[1][1, 0]) for i in range(4)] == [1, 2, 10, 12]


def test_prepare_voc_aug_errors(tmp_path):
    voc, sbd_root = voc_and_sbd(tmp_path)
    with pytest.raises(DatasetError, match=r"no SBD dataset/cls folder"):
        prepare_voc_aug(tmp_path, tmp_path / "elsewhere")
    (sbd_root / "dataset" / "cls" / "2008_000002.mat").unlink()
    with pytest.raises(DatasetError, match=r"SegmentationClassAug/2008_000002\.png: no SBD or VOC label"):
        prepare_voc_aug(voc, sbd_root / "dataset")


def test_prepare_never_replaces_other_content_without_overwrite(tmp_path, capsys):
    from ccnet.cli import main

    frame = "aachen_000000_000019"
    ids = np.array([[7, 8, 26, 0, 1, 33]] * H, dtype=np.uint8).repeat(2, axis=1)
    png(tmp_path / "gtFine/train/aachen" / f"{frame}_gtFine_labelIds.png", ids)
    own = tmp_path / "gtFine/train/aachen" / f"{frame}_gtFine_labelTrainIds.png"
    png(own, np.full((H, W), 3))  # the user's own train ids
    before = own.read_bytes()
    assert main(["prepare", "cityscapes", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{frame}_gtFine_labelTrainIds.png: already exists with other content" in err
    assert "--overwrite" in err and own.read_bytes() == before
    assert main(["prepare", "cityscapes", str(tmp_path), "--overwrite"]) == 0
    assert "wrote 1 *_gtFine_labelTrainIds.png files" in capsys.readouterr().out
    np.testing.assert_array_equal(read_label(own)[0, ::2], [0, 1, 13, 255, 255, 18])
    assert prepare_cityscapes(tmp_path) == 1  # what it wrote itself is no conflict


def test_prepare_voc_aug_keeps_an_edited_list_and_labels(tmp_path, capsys):
    from ccnet.cli import main

    voc, sbd_root = voc_and_sbd(tmp_path)
    assert main(["prepare", "voc-aug", str(tmp_path), str(sbd_root)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith("4 ids in ImageSets/Segmentation/train_aug.txt, labels in SegmentationClassAug/")
    assert "{" not in out
    assert prepare_voc_aug(tmp_path, sbd_root) == 4  # a rerun replaces nothing of the user's
    train_aug = voc / "ImageSets/Segmentation/train_aug.txt"
    train_aug.write_text("2007_000032\n")  # the user's own list
    with pytest.raises(DatasetError, match=r"train_aug\.txt: already exists with other content; not replaced"):
        prepare_voc_aug(tmp_path, sbd_root)
    assert train_aug.read_text() == "2007_000032\n"
    train_aug.unlink()
    label = voc / "SegmentationClassAug" / "2008_000001.png"
    png(label, np.full((H, W), 4))  # another conversion of that SBD label
    with pytest.raises(DatasetError, match=r"2008_000001\.png: already exists with other content"):
        prepare_voc_aug(tmp_path, sbd_root)
    assert not train_aug.exists() and int(read_label(label)[0, 0]) == 4  # nothing written
    assert prepare_voc_aug(tmp_path, sbd_root, overwrite=True) == 4
    assert int(read_label(label)[0, 0]) == 10
