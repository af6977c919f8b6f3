"""``ccnet prepare synthetic-coco``: sizes that cannot hold the objects, and files in the way."""

import json

import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

from ccnet.cli import main
from ccnet.data.synthetic import SyntheticContextDataset
from ccnet.detection.data import CocoInstances
from ccnet.detection.synthetic import instances_of, min_image_side, write_synthetic_coco


def test_min_image_side_is_where_the_smallest_object_still_counts():
    side = min_image_side(16)
    assert side == 38
    assert min_image_side(4) < side < min_image_side(30)
    # At the minimum, every scene holds an instance; at side 8 none does (what used to be written).
    scenes = SyntheticContextDataset("train", num_samples=40, size=(side, side), seed=0, key_label="ignore")
    assert all(instances_of(scenes.render(i)[1]) for i in range(40))
    tiny = SyntheticContextDataset("train", num_samples=10, size=(8, 8), seed=0, key_label="ignore")
    assert not any(instances_of(tiny.render(i)[1]) for i in range(10))


def test_prepare_refuses_sizes_that_cannot_hold_the_objects(tmp_path, capsys):
    assert main(["prepare", "synthetic-coco", str(tmp_path / "d"), "--size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ccnet prepare: error: image size 8x8: the synthetic COCO task needs at least 38 pixels a side "
                   "(its smallest objects must keep 16 pixels to be instances)")
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="split 'val': needs at least 1 image"):
        write_synthetic_coco(tmp_path / "d", {"train": 2, "val": 0}, size=(40, 40))
    assert not (tmp_path / "d").exists()


def test_prepare_keeps_the_users_files_and_replaces_its_own(tmp_path, capsys):
    root = tmp_path / "coco"
    command = ["prepare", "synthetic-coco", str(root), "--size", "40", "--train-images", "3", "--val-images", "2"]
    assert main(command) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"wrote the synthetic COCO instance task under {root}: 3 training images (")
    assert "validation images (" in out and "{" not in out
    train = CocoInstances.from_root(root, "train", train=True)
    assert len(train) == 3
    assert main([*command, "--seed", "1"]) == 0  # a folder it wrote is its own to replace
    capsys.readouterr()

    own = root / "annotations" / "instances_val.json"
    own.write_text(json.dumps({"images": [], "annotations": [], "categories": [], "info": {"description": "mine"}}))
    before = own.read_text()
    images_before = sorted(p.name for p in (root / "val").iterdir())
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "instances_val.json: already exists and was not written by ccnet prepare synthetic-coco" in err
    assert own.read_text() == before and sorted(p.name for p in (root / "val").iterdir()) == images_before
    assert main([*command, "--overwrite"]) == 0
    assert json.loads(own.read_text())["info"]["description"].startswith("ccnet synthetic")

    # Images under a split's name without an annotation file of ours: refused unless identical.
    (root / "annotations" / "instances_train.json").unlink()
    assert main(command) == 0  # the same scenes (an interrupted run): rewritten
    capsys.readouterr()
    (root / "annotations" / "instances_train.json").unlink()
    assert main([*command, "--seed", "2"]) == 2
    assert "train_000000.png: already exists with other content" in capsys.readouterr().err
