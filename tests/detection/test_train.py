"""Mask R-CNN through the engine and the CLI on the tiny COCO dataset: train a few steps,
COCOeval, exact resume, predict, torchrun DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

import torch
from PIL import Image

from ccnet.cli import main
from ccnet.config import load_config
from ccnet.detection.trainer import DetectionTrainer
from ccnet.engine.checkpoint import load_checkpoint

from .conftest import TINY_MODEL


def _config(root, *extra):
    return [*TINY_MODEL, f"data.root={root}", "data.train_split=train", "data.val_split=val", "data.batch_size=2",
            "data.workers=0", "optim.lr=0.01", "optim.schedule=step", "optim.steps=[3]", "optim.warmup_iters=2",
            "optim.head_lr_mult=1.0", "log_interval=1", "checkpoint_interval=2", "num_visualizations=2",
            "device=cpu", *extra]


def test_train_evaluate_predict_through_the_cli(tiny_coco, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_config(tiny_coco, "optim.iterations=4"), "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Mask R-CNN resnet18-FPN, RCCA R=2 before the last block of layer3" in printed
    assert "| segm |" in printed

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4]
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= steps[0].keys()
    # The step schedule with warm-up: lr after each iteration i is 0.01 * factor(i).
    assert [r["lr"] for r in steps] == pytest.approx([0.01 * (0.1 + 0.9 / 2), 0.01, 0.001, 0.001])

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"} and set(metrics["segm"]) == set(
        metrics["bbox"])
    assert metrics["class_names"] == ["square", "disc"]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["val_000.png", "val_001.png"]
    assert Image.open(out / "predictions" / "val_000.png").size == (128, 64)  # ground truth | detections

    # ccnet evaluate on the checkpoint reproduces the training run's final COCOeval.
    checkpoint = out / "checkpoints" / "latest.pt"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["bbox"] == metrics["bbox"] and again["segm"] == metrics["segm"]

    # ccnet predict draws the detections and writes them as JSON.
    draw = "detection.draw_score_thresh=0.0"
    assert main(["predict", "--checkpoint", str(checkpoint), str(tiny_coco / "val"), draw, "--output",
                 str(tmp_path / "p"), "--no-progress"]) == 0
    drawn = Image.open(tmp_path / "p" / "val_000.png")
    assert drawn.size == (64, 64)
    original = Image.open(tiny_coco / "val" / "val_000.png")
    detections = json.loads((tmp_path / "p" / "val_000.json").read_text())
    assert detections and {"label", "score", "bbox_xyxy", "segmentation"} <= detections[0].keys()
    assert detections[0]["label"] in ("square", "disc")
    assert (np.asarray(drawn) != np.asarray(original)).any()  # something was drawn

    # A checkpoint of another model is refused with the key at fault.
    assert main(["evaluate", "--checkpoint", str(checkpoint), "detection.context=nonlocal"]) == 2
    assert "detection.context='rcca' but the config has 'nonlocal'" in capsys.readouterr().err


def test_resume_replays_training_exactly(tiny_coco, tmp_path):
    items = _config(tiny_coco, "optim.iterations=4", "num_visualizations=0", "detection.context=nonlocal")
    config = load_config(None, [i for i in items if "=" in i])
    whole = DetectionTrainer(config, output_dir=tmp_path / "whole", progress=False).fit()
    DetectionTrainer(config, output_dir=tmp_path / "split", stop_after=2, progress=False).fit()
    resumed = DetectionTrainer(config, output_dir=tmp_path / "split", resume="auto", progress=False).fit()
    assert resumed.iteration == whole.iteration == 4
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "latest.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert resumed.metrics == whole.metrics


def test_torchrun_two_processes(tiny_coco, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ccnet.cli", "train", *_config(tiny_coco, "optim.iterations=2", "num_visualizations=0",
                                                    "detection.context=rcca", "data.batch_size=1"),
               "--output", str(out), "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 1 x 2" in result.stdout
    checkpoint = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert checkpoint["iteration"] == 2 and len(checkpoint["rng"]) == 2
    # SyncBatchNorm under torchrun (norm: bn), converted back to the plain keys in the checkpoint.
    assert any(k.endswith("bn1.running_mean") for k in checkpoint["model"])
    # The distributed evaluation (each rank a shard, gathered on rank 0) equals a single process's.
    distributed = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", "--checkpoint", str(out / "checkpoints" / "latest.pt"),
                 "--output", str(tmp_path / "single.json")]) == 0
    single = json.loads((tmp_path / "single.json").read_text())
    for iou_type in ("bbox", "segm"):
        assert single[iou_type] == pytest.approx(distributed[iou_type], abs=1e-3)


def test_a_mask_rcnn_checkpoint_is_named_by_the_segmentation_only_commands(tiny_coco, tmp_path, capsys):
    from ccnet.cli.common import model_from_checkpoint
    from ccnet.detection.data import CocoInstances
    from ccnet.detection.model import mask_rcnn_from_config
    from ccnet.files import atomic_save

    config = load_config(None, _config(tiny_coco))
    info = CocoInstances.from_root(tiny_coco, "val").info
    path = tmp_path / "latest.pt"
    atomic_save({"format": 1, "iteration": 0, "model": mask_rcnn_from_config(config, info.num_classes).state_dict(),
                 "config": config.to_dict(), "info": info.to_dict()}, path)
    expected = (f"{path}: this is a Mask R-CNN checkpoint (task: detection); this command takes a segmentation "
                f"model: use ccnet predict --checkpoint {path} (drawn detections) or ccnet evaluate --checkpoint "
                f"{path} (COCOeval) for it")
    with pytest.raises(ValueError) as caught:
        model_from_checkpoint(str(path), [])  # the one loader of visualize-attention, explore and export
    assert str(caught.value) == expected
    image = tiny_coco / "val" / "val_000.png"
    commands = [["visualize-attention", str(path), str(image), "--pixel", "30,30", "--output", str(tmp_path / "att")],
                ["export", str(path), str(tmp_path / "m.onnx")]]
    for command in commands:
        assert main(command) == 2
        assert capsys.readouterr().err.strip() == f"ccnet {command[0]}: error: {expected}"
    assert not (tmp_path / "att").exists() and not (tmp_path / "m.onnx").exists()
