"""COCO instances through pycocotools: polygons, RLE, crowd regions, flip, errors."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

import torch
from pycocotools import mask as mask_utils

from ccnet.data.io import DatasetError
from ccnet.detection.data import CocoInstances, train_transform
from ccnet.engine.sampling import SeededDataset


def test_loads_polygons_rle_and_leaves_crowds_out(tiny_coco):
    train = CocoInstances.from_root(tiny_coco, "train", train=True)
    val = CocoInstances.from_root(tiny_coco, "val")
    assert len(val) == 4  # evaluation keeps the crowd-only image
    assert len(train) == 6  # training skips it (no object to learn from)
    assert train.info.class_names == ("square", "disc") and train.category_ids == (2, 7)

    raw = json.loads((tiny_coco / "annotations" / "instances_train.json").read_text())
    for index in range(len(train)):
        sample = train[index]
        image_id = sample["image_id"]
        anns = [a for a in raw["annotations"] if a["image_id"] == image_id]
        objects = [a for a in anns if not a["iscrowd"]]
        target = sample["target"]
        assert sample["image"].shape == (3, 64, 64) and 0 <= sample["image"].min() and sample["image"].max() <= 1
        assert target["labels"].tolist() == [1, 2]  # category 2 -> label 1, category 7 -> label 2; no crowd
        square, disc = objects
        x, y, w, h = square["bbox"]
        torch.testing.assert_close(target["boxes"][0], torch.tensor([x, y, x + w, y + h]))
        # The polygon's mask covers the drawn square (pycocotools rasterises the outline inclusively).
        mask = target["masks"][0].numpy().astype(bool)
        assert mask[int(y):int(y + h), int(x):int(x + w)].all() and abs(int(mask.sum()) - w * h) <= 2 * (w + h) + 1
        # The RLE mask is decoded exactly.
        rle = disc["segmentation"]
        expected = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(target["masks"][1].numpy(), expected)
        assert target["masks"].dtype == torch.uint8


def test_flip_moves_boxes_and_masks_together(tiny_coco):
    dataset = CocoInstances.from_root(tiny_coco, "train", train=True, transform=train_transform(flip=True))
    plain = CocoInstances.from_root(tiny_coco, "train", train=True)
    seeded = SeededDataset(dataset)
    flipped = 0
    for seed in range(8):
        sample = seeded[(0, seed)]
        again = seeded[(0, seed)]
        torch.testing.assert_close(sample["image"], again["image"])  # the seed decides the flip
        reference = plain[0]
        if torch.equal(sample["image"], reference["image"]):
            continue
        flipped += 1
        torch.testing.assert_close(sample["image"], reference["image"].flip(-1))
        torch.testing.assert_close(sample["target"]["masks"], reference["target"]["masks"].flip(-1))
        x1, y1, x2, y2 = reference["target"]["boxes"].unbind(1)
        torch.testing.assert_close(sample["target"]["boxes"], torch.stack([64 - x2, y1, 64 - x1, y2], 1))
        for box, mask in zip(sample["target"]["boxes"], sample["target"]["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)  # the mask lies inside its box
            assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
    assert 0 < flipped < 8


def test_bad_files_name_the_file(tiny_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(tiny_coco, root)
    ann = root / "annotations" / "instances_val.json"
    data = json.loads(ann.read_text())

    with pytest.raises(DatasetError, match=r"instances_test\.json: annotation file not found"):
        CocoInstances.from_root(root, "test")
    ann.write_text("{not json")
    with pytest.raises(DatasetError, match=r"instances_val\.json: not a valid JSON"):
        CocoInstances.from_root(root, "val")
    ann.write_text(json.dumps({**data, "annotations": [{"id": 1}]}))
    with pytest.raises(DatasetError, match=r"instances_val\.json: annotation #0 \(id 1\): no 'image_id'"):
        CocoInstances.from_root(root, "val")

    # Checked when the file is opened, not when the image is drawn.
    bad_category = json.loads(json.dumps(data))
    bad_category["annotations"][0]["category_id"] = 99
    ann.write_text(json.dumps(bad_category))
    with pytest.raises(DatasetError, match=r"annotation #0 \(id 1\): 'category_id' 99 is not in 'categories'"):
        CocoInstances.from_root(root, "val")

    bad_rle = json.loads(json.dumps(data))
    bad_rle["annotations"][1]["segmentation"] = {"size": [64, 64], "counts": 5}
    ann.write_text(json.dumps(bad_rle))
    with pytest.raises(DatasetError, match=r"annotation #1 \(id 2\): 'segmentation' RLE 'counts' must be"):
        CocoInstances.from_root(root, "val")

    wrong_size = json.loads(json.dumps(data))
    wrong_size["images"][0]["height"] = 65
    first = wrong_size["images"][0]["id"]  # its RLE masks (64x64) would be refused at once: keep the polygon
    wrong_size["annotations"] = [a for a in wrong_size["annotations"]
                                 if a["image_id"] != first or isinstance(a["segmentation"], list)]
    ann.write_text(json.dumps(wrong_size))
    with pytest.raises(DatasetError, match=r"val_000\.png: image is 64x64 but .*instances_val\.json says 64x65"):
        CocoInstances.from_root(root, "val")[0]

    ann.write_text(json.dumps(data))
    (root / "val" / "val_001.png").unlink()
    with pytest.raises(DatasetError, match=r"val_001\.png: file not found"):
        CocoInstances.from_root(root, "val")[1]


@pytest.mark.parametrize("key", ["file_name", "height", "width"])
def test_an_image_entry_without_its_fields_is_refused_when_opened(tiny_coco, tmp_path, key):
    root = tmp_path / "coco"
    shutil.copytree(tiny_coco, root)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    del data["images"][3][key]  # not the first: found before any image is drawn
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"instances_train\.json: image #3 \(id 13\): no '{key}'$"):
        CocoInstances.from_root(root, "train", train=True)
    data["images"][3][key] = "64" if key != "file_name" else ""
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"image #3 \(id 13\): '{key}' must be a"):
        CocoInstances.from_root(root, "train", train=True)


def test_what_the_reference_loaders_drop_is_dropped_counted_and_warned(tiny_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(tiny_coco, root)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    first = data["images"][0]["id"]
    square = next(a for a in data["annotations"] if a["image_id"] == first and isinstance(a["segmentation"], list))
    next_id = max(a["id"] for a in data["annotations"]) + 1

    def extra(**fields):
        nonlocal next_id
        entry = {"id": next_id, "image_id": first, "category_id": 2, "iscrowd": 0, "area": 16.0,
                 "bbox": [30.0, 2.0, 4.0, 4.0], "segmentation": [[30.0, 2.0, 34.0, 2.0, 34.0, 6.0, 30.0, 6.0]],
                 **fields}
        next_id += 1
        data["annotations"].append(entry)

    extra(image_id=999)                                             # not an image
    extra(bbox=[30.0, 2.0, -4.0, 4.0])                              # negative width
    extra(bbox=[100.0, 2.0, 4.0, 4.0])                              # box wholly outside the 64x64 image
    extra(segmentation=[[30.0, 2.0, 34.0, 2.0, 34.0]])              # its only polygon has odd length
    extra(segmentation=[[70.0, 2.0, 74.0, 2.0, 74.0, 6.0]])         # its only polygon lies outside
    square["segmentation"].append([1.0, 1.0, 2.0])                  # one odd polygon beside a good one
    ann.write_text(json.dumps(data))

    with pytest.warns(UserWarning) as caught:
        train = CocoInstances.from_root(root, "train", train=True)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "instances_train.json: left 5 annotations out of the training targets" in message
    for part in ("1 annotations whose image_id is not an image", "1 boxes with zero or negative width or height",
                 "1 boxes wholly outside their image", "2 polygons of odd length or under 3 points",
                 "2 annotations left without a valid polygon", "1 polygons wholly outside their image"):
        assert part in message
    assert train.check.counts.total() == 8

    # The image keeps its square (from its valid polygon) and its disc; nothing else.
    target = train[train.image_ids.index(first)]["target"]
    reference = CocoInstances.from_root(tiny_coco, "train", train=True)[0]["target"]
    assert target["labels"].tolist() == [1, 2]
    torch.testing.assert_close(target["boxes"], reference["boxes"])
    torch.testing.assert_close(target["masks"], reference["masks"])
    # Evaluation says that COCOeval scores against the file as it is.
    with pytest.warns(UserWarning, match="COCOeval scores against the file as it is"):
        CocoInstances(root / "train", ann)


def test_a_clean_file_warns_nothing(tiny_coco, recwarn):
    CocoInstances.from_root(tiny_coco, "train", train=True)
    assert not [w for w in recwarn if "training targets" in str(w.message)]
