"""A video run's model folder records what inference needs (the dataset, the clip length, the
attention mode) and predict / evaluate / export use it."""

import json

import numpy as np
import pytest
from PIL import Image

from ccnet.cli import main
from ccnet.cli.common import model_from_checkpoint
from ccnet.config import load_config
from ccnet.engine.trainer import Trainer
from ccnet.models import CCNet3D

VIDEO = [
    "data.dataset=synthetic_video", "data.synthetic_size=[32, 32]", "data.synthetic_val_samples=2",
    "data.batch_size=2", "data.workers=0", "video.clip_length=3", "model.head_channels=16",
    "model.aux_channels=8", "optim.iterations=1", "num_visualizations=0",
]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video_run")
    Trainer(load_config(None, VIDEO), output_dir=folder, progress=False).fit()
    return folder


def test_the_model_folder_records_clip_length_attention_and_dataset(video_run):
    document = json.loads((video_run / "model" / "config.json").read_text())
    assert document["inference"] == {"dataset": "synthetic_video", "clip_length": 3, "attention": "3d"}
    model, config, _ = model_from_checkpoint(str(video_run / "model"), [])
    assert isinstance(model, CCNet3D) and model.temporal and model.inference["clip_length"] == 3
    assert config.data.dataset == "synthetic_video" and config.video.clip_length == 3
    assert config.video.attention == "3d"
    # Overrides still win; the attention mode switches the same weights to per-frame attention.
    model, config, _ = model_from_checkpoint(str(video_run / "model"), ["video.clip_length=2", "video.attention=2d"])
    assert config.video.clip_length == 2 and not model.temporal
    # save_pretrained keeps the record when the model is saved again.
    model.save_pretrained(video_run / "copy")
    assert json.loads((video_run / "copy" / "config.json").read_text())["inference"]["clip_length"] == 3


def test_predict_and_evaluate_a_video_model_folder(video_run, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(frames / f"{i}.png")
    assert main(["predict", "--checkpoint", str(video_run / "model"), str(frames), "--output", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert "4 frames written" in (out := capsys.readouterr().out) and "clips of 3 frames" in out, out
    assert main(["evaluate", "--checkpoint", str(video_run / "model"), "--output", str(tmp_path / "m.json")]) == 0
    ours = json.loads((tmp_path / "m.json").read_text())
    assert main(["evaluate", "--checkpoint", str(video_run / "checkpoints" / "latest.pt")]) == 0
    assert f"mIoU {100 * ours['miou']:.2f}" in capsys.readouterr().out  # the folder scores as the checkpoint
    assert main(["evaluate", "--checkpoint", str(video_run / "model"), "data.dataset=synthetic"]) == 2
    assert "a video model (CCNet3D) is scored on clips; give a video dataset" in capsys.readouterr().err
