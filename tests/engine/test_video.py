"""Video in the engine: clip evaluation scores each annotated frame once, clip inference, video
prediction from frame folders and video files (per-frame PNGs, MP4), and training on clips with
exact resume."""

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.test_clips import camvid_video_tree
from torch import nn

from ccnet.config import load_config
from ccnet.data.camvid import CamVid
from ccnet.data.camvid_video import CamVidVideo
from ccnet.engine.checkpoint import load_checkpoint
from ccnet.engine.evaluate import evaluate
from ccnet.engine.inference import infer
from ccnet.engine.metrics import ConfusionMatrix
from ccnet.engine.trainer import Trainer
from ccnet.engine.video import predict_video
from ccnet.models import CCNet3D


class FrameEcho(nn.Module):
    """A 'video model' whose logits for each frame pick the class ``pixel value % K`` of that frame
    plus the clip's first frame (so a frame's prediction depends on which clip it sits in)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        value = (x[:, 0] * 58.395 + 123.675).round().long()  # undo the normalisation: (B, T, H, W)
        cls = (value + value[:, :1]) % self.num_classes
        return {"out": nn.functional.one_hot(cls, self.num_classes).permute(0, 4, 1, 2, 3).float()}


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_clip_evaluation_scores_each_annotated_frame_once(tmp_path, stride):
    values = camvid_video_tree(tmp_path)
    dataset = CamVidVideo(tmp_path, "train", clip_length=3, stride=stride)
    model = FrameEcho(11)
    confusion = evaluate(model, dataset, num_classes=11, progress=False, batch_size=2)
    # Expected: every annotated frame once, predicted in the clip that scores it.
    expected = ConfusionMatrix(11)
    frames = CamVid(tmp_path, "train")
    for clip in dataset.samples:
        first = values[clip.frames[0].name]
        for frame, scored in zip(clip.frames, clip.scored, strict=True):
            if scored:
                label = torch.from_numpy(frames.load([s.name for s in frames.samples].index(frame.name))[1])
                expected.update(torch.full_like(label, (values[frame.name] + first) % 11), label)
    assert torch.equal(confusion.matrix, expected.matrix)
    assert int(confusion.matrix.sum()) == len(values) * 8 * 12  # each of the 11 frames once


def test_infer_on_clips_resizes_flips_and_tiles_every_frame_alike():
    torch.manual_seed(0)
    model = CCNet3D(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux=False).eval()
    clips = torch.randn(1, 3, 2, 21, 27)
    probs = infer(model, clips, num_classes=3)
    assert probs.shape == (1, 3, 2, 21, 27)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 2, 21, 27))
    # Flipping mirrors every frame and back; tiles cover every frame the same way.
    flipped = infer(model, clips.flip(-1), num_classes=3).flip(-1)
    torch.testing.assert_close(infer(model, clips, num_classes=3, flip=True), (probs + flipped) / 2)
    both = infer(model, clips, num_classes=3, scales=(0.75, 1.0), mode="slide", crop_size=(17, 17))
    assert both.shape == (1, 3, 2, 21, 27) and torch.isfinite(both).all()


@pytest.fixture(scope="module")
def tiny_video_model():
    torch.manual_seed(0)
    model = CCNet3D(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux=False, gamma_init=0.8)
    return model.eval()


def _video_frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_predict_a_folder_of_frames_clip_by_clip(tiny_video_model, tmp_path):
    frames = _video_frames(7)
    for i, frame in enumerate(frames):  # names sort numerically, not by text
        Image.fromarray(frame).save(tmp_path / f"frame_{i}.png" if i < 10 else tmp_path / f"frame_{i:02d}.png")
    from ccnet.data.info import DatasetInfo
    info = DatasetInfo("t", ("a", "b", "c"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    written = predict_video(tiny_video_model, tmp_path, tmp_path / "out", info=info, clip_length=3,
                            progress=False)
    assert [p.name for p in written] == [f"frame_{i}.png" for i in range(7)]
    assert (tmp_path / "out" / "frame_6_color.png").is_file() and (tmp_path / "out" / "frame_6_overlay.png").is_file()
    # Clips [0, 1, 2], [3, 4, 5] and, for the last frame, [4, 5, 6].
    x = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)[None].float()
    x = (x - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)) / torch.tensor(
        [58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
    for clip, frame_indices in (([0, 1, 2], [0, 1, 2]), ([3, 4, 5], [3, 4, 5]), ([4, 5, 6], [6])):
        preds = infer(tiny_video_model, x[:, :, clip], num_classes=3).argmax(1)[0]
        for i in frame_indices:
            got = np.array(Image.open(tmp_path / "out" / f"frame_{i}.png"))
            assert np.array_equal(got, preds[clip.index(i)].numpy()), i


def test_predict_a_video_file_with_an_mp4_of_the_overlays(tiny_video_model, tmp_path, capsys):
    import cv2

    path = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (32, 24))
    for frame in _video_frames(5):
        writer.write(frame)
    writer.release()
    tiny_video_model.save_pretrained(tmp_path / "model", class_names=("a", "b", "c"))
    from ccnet.cli import main

    assert main(["predict", "--checkpoint", str(tmp_path / "model"), str(path), "video.clip_length=2", "--output",
                 str(tmp_path / "out"), "--mp4", "--no-progress"]) == 0
    assert "5 frames written" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("drive_*[0-9].png")) == [f"drive_{i:06d}.png"
                                                                                  for i in range(5)]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "drive_overlay.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 5 and not list((tmp_path / "out").glob(".*partial*"))
    assert main(["predict", "--checkpoint", str(tmp_path / "model"), str(tmp_path / "nothing.mp4"), "--output",
                 str(tmp_path / "o2")]) == 2
    assert "nothing.mp4" in capsys.readouterr().err


VIDEO = [
    "data.dataset=synthetic_video", "data.synthetic_size=[32, 32]", "data.synthetic_val_samples=2",
    "data.batch_size=2", "data.workers=0", "video.clip_length=2", "model.head_channels=16", "model.aux=true",
    "model.aux_channels=8", "model.dropout=0.3", "optim.iterations=2", "log_interval=1", "checkpoint_interval=100",
    "num_visualizations=1",
]


def test_training_on_clips_resumes_exactly(tmp_path):
    straight = Trainer(load_config(None, VIDEO), output_dir=tmp_path / "a", progress=False).fit()
    Trainer(load_config(None, VIDEO), output_dir=tmp_path / "b", stop_after=1, progress=False).fit()
    resumed = Trainer(load_config(None, [*VIDEO, "data.workers=1"]), output_dir=tmp_path / "b", resume="auto",
                      progress=False).fit()
    a, b = (load_checkpoint(tmp_path / run / "checkpoints/latest.pt") for run in ("a", "b"))
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert straight.metrics.miou == resumed.metrics.miou
    assert isinstance(straight.output_dir, type(tmp_path)) and (tmp_path / "a/model/config.json").is_file()
    assert CCNet3D.from_pretrained(tmp_path / "a/model").temporal
    strip = np.array(Image.open(next((tmp_path / "a/predictions").glob("*.png"))))
    assert strip.shape == (2 * 32, 3 * 32, 3)  # one row per frame: image | ground truth | prediction
    # The same weights, evaluated frame by frame (the 2D baseline) from the command line.
    from ccnet.cli import main

    assert main(["evaluate", "--checkpoint", str(tmp_path / "a/checkpoints/latest.pt"), "video.attention=2d",
                 "--output", str(tmp_path / "per_frame.json")]) == 0
    assert (tmp_path / "per_frame.json").is_file()
