"""The command line on the synthetic datasets' splits, evaluation progress, and the result lines of
export and video predict: unknown splits refused in one line, the training stream scored on
``data.synthetic_val_samples`` scenes, ``--no-progress``, ``--frames`` refused for 2D models, and
one readable line (no warning, no repr) per export."""

import warnings

import cv2
import numpy as np
import pytest

from ccnet.cli import main

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=2", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux_channels=8", "optim.iterations=1", "num_visualizations=0",
]
VIDEO = ["data.dataset=synthetic_video", "data.synthetic_size=[32, 32]", "video.clip_length=2",
         "model.aux=false", *TINY[1:]]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, "--output", str(runs / "image"), "--no-progress"]) == 0
    assert main(["train", *VIDEO, "--output", str(runs / "video"), "--no-progress"]) == 0
    return {name: runs / name / "checkpoints" / "latest.pt" for name in ("image", "video")}


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("split", ["bogus", "test"])
def test_unknown_synthetic_split_is_refused_naming_the_splits(checkpoints, kind, split, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoints[kind]), "--split", split]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"split {split!r}" in err and "'train' (data.train_split) and 'val' (data.val_split)" in err, err


@pytest.mark.parametrize("kind", ["image", "video"])
def test_the_synthetic_training_split_is_scored_on_a_few_scenes_with_progress(checkpoints, kind, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoints[kind]), "--split", "train"]) == 0
    captured = capsys.readouterr()
    assert "note: scoring the first 2 scenes of the" in captured.out and "data.synthetic_val_samples" in captured.out
    assert "mIoU" in captured.out
    assert "evaluate: 100%" in captured.err and "2/2" in captured.err, captured.err  # not 100,000


def test_evaluate_no_progress_hides_the_bar(checkpoints, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoints["image"]), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "mIoU" in captured.out and "evaluate:" not in captured.err, captured.err


def test_export_prints_one_readable_line_and_no_warning(checkpoints, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", str(checkpoints["image"]), str(path), "--size", "32", "32"]) == 0
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    out = capsys.readouterr().out.strip()
    assert out.splitlines() == [out] and out.startswith(f"wrote {path} (opset 18; onnxruntime matches PyTorch on "
                                                        f"inputs 1x3x32x32, 2x3x17x19, max |onnx - eager| "), out
    assert "OnnxExport(" not in out and "PosixPath" not in out
    assert main(["export", str(checkpoints["image"]), str(path), "--size", "32", "32", "--no-check"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path} (opset 18; not checked in onnxruntime)"


def test_export_refuses_frames_for_a_2d_model(checkpoints, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["export", str(checkpoints["image"]), str(path), "--size", "32", "32", "--frames", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frames=3 is for video models" in err and "CCNet" in err, err
    assert not path.exists()


def test_video_predict_with_an_image_model_says_frame_by_frame_in_good_english(checkpoints, tmp_path, capsys):
    video = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    writer.write(np.full((48, 48, 3), 90, np.uint8))
    writer.release()
    assert main(["predict", "--checkpoint", str(checkpoints["image"]), str(video), "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 frame written" in out and "frame by frame" in out and "1 frames" not in out, out
