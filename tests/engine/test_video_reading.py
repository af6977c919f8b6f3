"""Reading videos drops nothing silently: a video file damaged mid-way says how many of the frames
its container announces were read (an error when none), a folder of frames with a gap in its
numbering names the gap, and ``ccnet predict`` shows both as one warning line."""

import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.cli import main
from ccnet.data.clips import numbering_gaps
from ccnet.data.io import DatasetError, DataWarning
from ccnet.engine.video import read_frames
from ccnet.models import CCNet3D


def _avi(path, count=12, size=(24, 32)):
    """A real MJPG AVI of ``count`` noise frames written by OpenCV; returns the byte offset of each
    frame's chunk (``00dc``) in the file's movie list."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (size[1], size[0]))
    rng = np.random.default_rng(0)
    for _ in range(count):
        writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    offsets, at = [], data.find(b"movi")
    while len(offsets) < count:
        at = data.find(b"00dc", at + 1)
        offsets.append(at)
    return offsets


def _truncate(path, size):
    path.write_bytes(path.read_bytes()[:size])


def _read_all(source):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, _ = read_frames(source)
        names = [name for name, _ in frames]
    return names, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_an_intact_video_reads_every_frame_without_a_warning(tmp_path):
    _avi(tmp_path / "clip.avi")
    names, messages = _read_all(tmp_path / "clip.avi")
    assert len(names) == 12 and messages == []


def test_a_video_cut_mid_file_says_how_many_of_the_announced_frames_were_read(tmp_path):
    path = tmp_path / "cut.avi"
    offsets = _avi(path)
    _truncate(path, offsets[4])  # the header still announces 12 frames; 4 are left
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == 12
    names, messages = _read_all(path)
    assert names == [f"cut_{i:06d}" for i in range(4)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert f"{path}: read 4 of the 12 frames its container announces" in messages[0], messages
    assert "damaged or truncated after frame 3, the other 8 are missing" in messages[0]


def test_a_video_with_no_decodable_frame_is_an_error_with_the_announced_count(tmp_path):
    path = tmp_path / "empty.avi"
    offsets = _avi(path)
    _truncate(path, offsets[0] + 20)  # opens, announces 12, decodes none
    with pytest.raises(DatasetError, match=r"empty\.avi: no frame could be decoded, of the 12 its container announces"):
        _read_all(path)


def test_gaps_in_a_folder_of_frames_are_named(tmp_path):
    for number in (1, 2, 3, 7, 8, 12):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"frame_{number:03d}.png")
    names, messages = _read_all(tmp_path)
    assert len(names) == 6 and len(messages) == 1
    assert f"{tmp_path}: the frame numbering has 2 gaps (frame_003 -> frame_007, 3 missing; frame_008 -> frame_012, " \
           "3 missing)" in messages[0], messages


@pytest.mark.parametrize("names", [["f_0", "f_2", "f_4", "f_6"], ["a", "b", "c"], ["cam1_5", "cam2_9"],
                                   ["frame_9", "frame_10", "frame_11"]])
def test_regular_or_unnumbered_frames_have_no_gaps(tmp_path, names):
    for name in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.png")
    assert _read_all(tmp_path)[1] == []


def test_numbering_gaps_use_the_usual_step():
    assert numbering_gaps([]) == [] and numbering_gaps([5]) == []
    assert numbering_gaps([0, 1, 2, 5, 6]) == [(2, 5, 2)]
    assert numbering_gaps([0, 2, 4, 10, 12]) == [(4, 10, 2)]  # every other frame: 6 and 8 missing
    assert numbering_gaps([0, 30, 60, 90]) == []


def test_predict_on_a_damaged_video_warns_in_one_line_and_writes_what_was_read(tmp_path, capsys):
    torch.manual_seed(0)
    model = CCNet3D(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux=False)
    model.save_pretrained(tmp_path / "model", class_names=("a", "b", "c"))
    path = tmp_path / "drive.avi"
    _truncate(path, _avi(path)[4])
    assert main(["predict", "--checkpoint", str(tmp_path / "model"), str(path), "video.clip_length=2",
                 "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "4 frames written" in captured.out
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert warning == [f"ccnet predict: warning: {path}: read 4 of the 12 frames its container announces; the file "
                       "is damaged or truncated after frame 3, the other 8 are missing"], captured.err


def test_a_gap_in_camvid_raw_video_frames_is_named(tmp_path):
    from tests.data.test_clips import _write, camvid_video_tree

    from ccnet.data.camvid_video import CamVidVideo

    camvid_video_tree(tmp_path, sequences={"0006R0": ["0006R0_f00930", "0006R0_f00960"]})
    raw = tmp_path / "frames" / "0006R0"
    for number in [*range(928, 941), *range(950, 963)]:  # 941..949 never extracted
        _write(raw / f"{number:05d}.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.warns(DataWarning, match=r"0006R0: the video frame numbers of sequence 0006R0 have 1 gap "
                                         r"\(00940\.png -> 00950\.png, 9 missing\)"):
        CamVidVideo(tmp_path, "train", clip_length=3, frames_root=tmp_path / "frames")
    (raw / "00950.png").rename(raw / "00941.png")
    for number in range(951, 963):
        (raw / f"{number:05d}.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        with pytest.raises(DatasetError, match="annotated frame 960 is not among the video frames"):
            CamVidVideo(tmp_path, "train", clip_length=3, frames_root=tmp_path / "frames")
