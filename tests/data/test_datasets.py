"""Every dataset reader on a tiny tree written in that dataset's exact on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.data import (
    ADE20K,
    DATASETS,
    LIP,
    CamVid,
    Cityscapes,
    DatasetError,
    FolderDataset,
    PascalVOC,
    build_dataset,
)
from ccnet.data.voc import voc_palette

H, W = 8, 12
RNG = np.random.default_rng(0)


def image(path: Path, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def label(path: Path, value: int | np.ndarray, size: tuple[int, int] = (H, W), palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.broadcast_to(np.asarray(value, dtype=np.uint8), size)
    pil = Image.fromarray(np.ascontiguousarray(array))
    if palette:
        pil = Image.fromarray(np.ascontiguousarray(array), mode="P")
        pil.putpalette([c for colour in voc_palette(256) for c in colour])
    pil.save(path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------- Cityscapes


def cityscapes_tree(root: Path, split: str = "train", values=(7, 26, 0)) -> list[str]:
    frames = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"][: len(values)]
    for frame, value in zip(frames, values, strict=True):
        city = frame.split("_")[0]
        image(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png")
        label(root / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", value)
        (root / "gtFine" / split / city / f"{frame}_gtFine_color.png").write_bytes(b"")  # other gtFine files
    return frames


def test_cityscapes_reads_and_maps_label_ids(tmp_path):
    frames = cityscapes_tree(tmp_path)
    dataset = Cityscapes(tmp_path, "train")
    assert len(dataset) == 3
    assert [s.name for s in dataset.samples] == [f"{f}_leftImg8bit" for f in frames]
    assert [int(dataset.load(i)[1][0, 0]) for i in range(3)] == [0, 13, 255]  # road, car, unlabeled
    image_, label_ = dataset.load(0)
    assert image_.shape == (H, W, 3) and image_.dtype == np.uint8
    assert label_.shape == (H, W) and label_.dtype == np.uint8
    item = dataset[1]
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    assert item["label"].shape == (H, W) and item["label"].dtype == torch.int64
    assert item["name"] == "aachen_000001_000019_leftImg8bit"


def test_cityscapes_info_from_cityscapesscripts():
    info = Cityscapes.info
    assert info.num_classes == 19 and info.ignore_index == 255
    assert info.class_names[0] == "road" and info.class_names[18] == "bicycle"
    assert info.palette[13] == (0, 0, 142)


def test_cityscapes_prefers_label_train_ids(tmp_path):
    cityscapes_tree(tmp_path)
    city = tmp_path / "gtFine" / "train" / "aachen"
    label(city / "aachen_000000_000019_gtFine_labelTrainIds.png", 5)  # labelIds says 7 (-> 0)
    dataset = Cityscapes(tmp_path, "train")
    assert dataset.samples[0].label.name.endswith("_labelTrainIds.png")
    assert int(dataset.load(0)[1][0, 0]) == 5
    assert int(dataset.load(1)[1][0, 0]) == 13  # the others still from labelIds


def test_cityscapes_split_without_gtfine_is_unlabelled(tmp_path):
    image(tmp_path / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png")
    dataset = Cityscapes(tmp_path, "test")
    assert not dataset.has_labels
    assert (dataset.load(0)[1] == 255).all()


def test_cityscapes_missing_root_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"leftImg8bit/train: directory not found; expected .*gtFine"):
        Cityscapes(tmp_path / "nowhere", "train")


def test_cityscapes_image_without_label_names_the_image(tmp_path):
    cityscapes_tree(tmp_path)
    image(tmp_path / "leftImg8bit" / "train" / "bochum" / "bochum_000009_000313_leftImg8bit.png")
    with pytest.raises(DatasetError, match=r"bochum_000009_000313_leftImg8bit\.png: no label"):
        Cityscapes(tmp_path, "train")


def test_cityscapes_label_without_image_names_the_label(tmp_path):
    cityscapes_tree(tmp_path)
    label(tmp_path / "gtFine" / "train" / "bochum" / "bochum_000009_000313_gtFine_labelIds.png", 7)
    with pytest.raises(DatasetError, match=r"bochum_000009_000313_gtFine_labelIds\.png: no image"):
        Cityscapes(tmp_path, "train")


def test_cityscapes_empty_split(tmp_path):
    (tmp_path / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
    (tmp_path / "gtFine" / "val" / "lindau").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"leftImg8bit/val: no images found"):
        Cityscapes(tmp_path, "val")


def test_cityscapes_size_mismatch_names_the_label(tmp_path):
    cityscapes_tree(tmp_path)
    bad = label(tmp_path / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png", 7, size=(4, 6))
    dataset = Cityscapes(tmp_path, "train")
    with pytest.raises(DatasetError, match=rf"{bad.name}: label size 6x4 differs from image size 12x8"):
        dataset.load(1)


def test_cityscapes_out_of_range_value_names_file_and_value(tmp_path):
    cityscapes_tree(tmp_path, values=(7, 40))
    dataset = Cityscapes(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"aachen_000001_000019_gtFine_labelIds\.png: label values \[40\]"):
        dataset.load(1)


def test_truncated_image_names_it(tmp_path):
    cityscapes_tree(tmp_path)
    path = tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    image(path, size=(64, 64))
    truncate(path)
    dataset = Cityscapes(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"aachen_000000_000019_leftImg8bit\.png: cannot read image"):
        dataset[0]


# ----------------------------------------------------------------------------- ADE20K


def ade_tree(root: Path, folder: str = "training", values=(0, 1, 150)) -> None:
    base = root / "ADEChallengeData2016"
    for i, value in enumerate(values, start=1):
        stem = f"ADE_{folder[:5] if folder == 'training' else 'val'}_{i:08d}"
        image(base / "images" / folder / f"{stem}.jpg")
        label(base / "annotations" / folder / f"{stem}.png", value)


def test_ade20k_reduce_zero_label(tmp_path):
    ade_tree(tmp_path)
    dataset = ADE20K(tmp_path, "train")
    assert [s.name for s in dataset.samples] == ["ADE_train_00000001", "ADE_train_00000002", "ADE_train_00000003"]
    assert [int(dataset.load(i)[1][0, 0]) for i in range(3)] == [255, 0, 149]
    assert ADE20K.info.num_classes == 150 and len(ADE20K.info.palette) == 150
    assert ADE20K.info.class_names[:3] == ("wall", "building", "sky") and ADE20K.info.class_names[-1] == "flag"


def test_ade20k_root_may_be_the_challenge_folder_and_val_aliases(tmp_path):
    ade_tree(tmp_path, "validation", values=(3, 4))
    for split in ("val", "validation"):
        dataset = ADE20K(tmp_path / "ADEChallengeData2016", split)
        assert len(dataset) == 2 and int(dataset.load(0)[1][0, 0]) == 2


def test_ade20k_value_above_150_is_an_error(tmp_path):
    ade_tree(tmp_path, values=(151,))
    with pytest.raises(DatasetError, match=r"ADE_train_00000001\.png: label values \[151\] outside the 150 classes"):
        ADE20K(tmp_path, "train").load(0)


def test_ade20k_missing_annotations(tmp_path):
    image(tmp_path / "ADEChallengeData2016/images/training/ADE_train_00000001.jpg")
    with pytest.raises(DatasetError, match=r"annotations/training: directory not found"):
        ADE20K(tmp_path, "train")
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        ADE20K(tmp_path, "test")


# ----------------------------------------------------------------------------- LIP


def lip_tree(root: Path, ids=("100034_483681", "10005_205677", "100142_449784"), split="train") -> None:
    for i, sample_id in enumerate(ids):
        image(root / "TrainVal_images" / f"{split}_images" / f"{sample_id}.jpg")
        label(root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{sample_id}.png", 14 + i)


def test_lip_official_layout_with_id_list(tmp_path):
    lip_tree(tmp_path)
    (tmp_path / "train_id.txt").write_text("10005_205677\n100034_483681\n")
    dataset = LIP(tmp_path, "train")
    assert [s.name for s in dataset.samples] == ["100034_483681", "10005_205677"]  # the third is not listed
    assert int(dataset.load(1)[1][0, 0]) == 15
    assert LIP.info.flip_pairs == ((14, 15), (16, 17), (18, 19))
    assert LIP.info.num_classes == 20 and LIP.info.class_names[14] == "Left-arm"


def test_lip_without_id_list_and_flat_layout(tmp_path):
    lip_tree(tmp_path, split="val")
    assert len(LIP(tmp_path, "val")) == 3
    flat = tmp_path / "flat"
    image(flat / "val_images" / "1_1.jpg")
    label(flat / "val_segmentations" / "1_1.png", 2)
    assert [s.name for s in LIP(flat, "val").samples] == ["1_1"]


def test_lip_listed_id_without_label_names_the_file(tmp_path):
    lip_tree(tmp_path)
    image(tmp_path / "TrainVal_images" / "train_images" / "999_1.jpg")
    (tmp_path / "train_id.txt").write_text("999_1\n")
    with pytest.raises(DatasetError, match=r"train_segmentations/999_1\.png: label of 999_1"):
        LIP(tmp_path, "train")


def test_lip_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: directory not found; expected root/TrainVal_images"):
        LIP(tmp_path / "nowhere", "train")


# ----------------------------------------------------------------------------- CamVid


def camvid_tree(root: Path, split: str = "train", values=(0, 10, 11)) -> None:
    for i, value in enumerate(values):
        image(root / split / f"0001TP_{i:06d}.png")
        label(root / f"{split}annot" / f"0001TP_{i:06d}.png", value)


def test_camvid_void_is_ignored(tmp_path):
    camvid_tree(tmp_path)
    dataset = CamVid(tmp_path, "train")
    assert [s.name for s in dataset.samples] == ["0001TP_000000", "0001TP_000001", "0001TP_000002"]
    assert [int(dataset.load(i)[1][0, 0]) for i in range(3)] == [0, 10, 255]
    assert CamVid.info.num_classes == 11 and CamVid.info.palette[0] == (128, 128, 128)


def test_camvid_errors(tmp_path):
    camvid_tree(tmp_path, values=(12,))
    with pytest.raises(DatasetError, match=r"trainannot/0001TP_000000\.png: label values \[12\]"):
        CamVid(tmp_path, "train").load(0)
    with pytest.raises(DatasetError, match=r"val: directory not found; expected root/\{split\}"):
        CamVid(tmp_path, "val")


# ----------------------------------------------------------------------------- PASCAL VOC


def voc_tree(root: Path, ids=("2007_000032", "2007_000039", "2008_000002"), values=(15, 1, 20)) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sample_id, value in zip(ids, values, strict=True):
        image(voc / "JPEGImages" / f"{sample_id}.jpg")
        array = np.full((H, W), value, dtype=np.uint8)
        array[0, :] = 255  # object boundary
        label(voc / "SegmentationClass" / f"{sample_id}.png", array, palette=True)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{ids[0]}\n{ids[1]}\n")
    (lists / "val.txt").write_text(f"{ids[2]}\n")
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def test_voc_palette_indices_and_boundary(tmp_path):
    voc = voc_tree(tmp_path)
    for root in (tmp_path, voc):
        dataset = PascalVOC(root, "train")
        assert [s.name for s in dataset.samples] == ["2007_000032", "2007_000039"]
        label_ = dataset.load(0)[1]
        assert int(label_[1, 0]) == 15 and (label_[0] == 255).all()
    assert len(PascalVOC(tmp_path, "trainval")) == 3
    assert PascalVOC.info.num_classes == 21 and PascalVOC.info.palette[15] == (192, 128, 128)


def test_voc_listed_id_without_label(tmp_path):
    voc = voc_tree(tmp_path)
    (voc / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(DatasetError, match=r"SegmentationClass/2007_000039\.png: label of 2007_000039"):
        PascalVOC(tmp_path, "train")


def test_voc_train_aug_needs_its_list(tmp_path):
    voc_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"train_aug\.txt: .*ccnet prepare voc-aug"):
        PascalVOC(tmp_path, "train_aug")


def test_voc_train_aug_reads_segmentation_class_aug(tmp_path):
    voc = voc_tree(tmp_path)
    label(voc / "SegmentationClassAug" / "2007_000032.png", 7)
    label(voc / "SegmentationClassAug" / "2007_000039.png", 8)
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2007_000032\n2007_000039\n")
    for split in ("train_aug", "aug"):
        dataset = PascalVOC(tmp_path, split)
        assert [int(dataset.load(i)[1][0, 0]) for i in range(2)] == [7, 8]


def test_voc_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"no VOC2012 folder with JPEGImages found"):
        PascalVOC(tmp_path, "train")


# ----------------------------------------------------------------------------- folder


def folder_tree(root: Path, sub: str = "", stems=("b", "a", "c"), suffixes=(".jpg", ".png", ".bmp")) -> None:
    for i, (stem, suffix) in enumerate(zip(stems, suffixes, strict=True)):
        image(root / "images" / sub / f"{stem}{suffix}")
        label(root / "masks" / sub / f"{stem}.png", i)
    (root / "classes.txt").write_text("# my classes\nbackground 0 0 0\n\nroad marking\ncar 0 0 142  # blue\n")


def test_folder_dataset(tmp_path):
    folder_tree(tmp_path)
    dataset = FolderDataset(tmp_path, "train")
    assert [s.name for s in dataset.samples] == ["a", "b", "c"]
    assert [int(dataset.load(i)[1][0, 0]) for i in range(3)] == [1, 0, 2]
    assert dataset.info.class_names == ("background", "road marking", "car")
    assert dataset.info.palette[0] == (0, 0, 0) and dataset.info.palette[2] == (0, 0, 142)
    assert dataset.info.palette[1] == voc_palette(3)[1]  # generated, deterministic


def test_folder_dataset_split_folders_and_ignore_index(tmp_path):
    folder_tree(tmp_path, "val")
    folder_tree(tmp_path, "train", stems=("x", "y", "z"))
    dataset = FolderDataset(tmp_path, "val", ignore_index=254)
    assert [s.name for s in dataset.samples] == ["a", "b", "c"] and dataset.info.ignore_index == 254
    with pytest.raises(DatasetError, match=r"images/test: split folder not found \(found train, val\)"):
        FolderDataset(tmp_path, "test")


def test_folder_dataset_errors(tmp_path):
    folder_tree(tmp_path)
    (tmp_path / "masks" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"images/a\.png: no label"):
        FolderDataset(tmp_path, "train")
    image(tmp_path / "images" / "b.png")
    with pytest.raises(DatasetError, match=r"images/b\.(jpg|png): same name as"):
        FolderDataset(tmp_path, "train")


@pytest.mark.parametrize(
    ("text", "where"),
    [("sky\ncar 0 0\n", "classes.txt:2"), ("sky\n# x\nroad 0 0 300\n", "classes.txt:3"), ("a\na\n", "classes.txt:2")],
)
def test_folder_malformed_class_file_names_line(tmp_path, text, where):
    folder_tree(tmp_path)
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(DatasetError, match=rf"{where}: "):
        FolderDataset(tmp_path, "train")


def test_folder_without_masks_is_unlabelled(tmp_path):
    image(tmp_path / "images" / "photo.jpg")
    dataset = FolderDataset(tmp_path, "test", classes=["bg", "fg"])
    assert not dataset.has_labels and (dataset.load(0)[1] == 255).all()
    with pytest.raises(DatasetError, match=r"classes\.txt: class file not found"):
        FolderDataset(tmp_path, "test")


# ----------------------------------------------------------------------------- registry and loading


def test_registry():
    assert set(DATASETS) == {"cityscapes", "ade20k", "lip", "camvid", "voc", "folder"}
    with pytest.raises(ValueError, match="unknown dataset 'kitti'; valid names: cityscapes, ade20k"):
        build_dataset("kitti", "/data", "train")


def test_build_dataset_and_dataloader(tmp_path):
    camvid_tree(tmp_path)
    dataset = build_dataset("camvid", tmp_path, "train")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 3, H, W) and batch["label"].shape == (3, H, W)
    assert batch["name"] == ["0001TP_000000", "0001TP_000001", "0001TP_000002"]
    assert set(batch["label"].unique().tolist()) == {0, 10, 255}


def test_transform_is_reassignable(tmp_path):
    camvid_tree(tmp_path)
    dataset = CamVid(tmp_path, "train")
    dataset.transform = lambda im, lb: (torch.zeros(3, 2, 2), torch.ones(2, 2, dtype=torch.long))
    assert dataset[0]["image"].shape == (3, 2, 2)
