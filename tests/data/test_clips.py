"""Clips: windows and which clip scores each frame; CamVid as video on tiny trees in the four naming
patterns (grouping, ordering, splits, raw frames, errors); one augmentation draw per clip."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.data.camvid_video import CamVidVideo, parse_frame_name
from ccnet.data.clips import clip_windows, scoring_windows
from ccnet.data.io import DatasetError
from ccnet.data.transforms import ClipTransform, build_train_transform
from ccnet.engine.sampling import SeededDataset

H, W = 8, 12


@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 12])
@pytest.mark.parametrize(("clip_length", "stride"), [(1, 1), (3, 1), (3, 2), (3, 3), (5, 2), (5, 5)])
def test_windows_cover_every_frame_and_each_is_scored_once(length, clip_length, stride):
    windows = clip_windows(length, clip_length, stride)
    flags = scoring_windows(windows)
    assert all(len(w) == clip_length for w in windows)
    assert {i for w in windows for i in w} == set(range(length))
    scored = [frame for window, fl in zip(windows, flags, strict=True) for frame, f in zip(window, fl, strict=True)
              if f]
    assert sorted(scored) == list(range(length))  # every frame exactly once
    if length >= clip_length:
        assert all(w == list(range(w[0], w[0] + clip_length)) for w in windows)  # consecutive
        starts = [w[0] for w in windows]
        assert starts[:-1] == list(range(0, starts[-2] + 1, stride)) if len(starts) > 1 else starts == [0]
        assert starts[-1] == length - clip_length


def test_frames_are_scored_where_they_are_most_central():
    windows = clip_windows(6, 3, 1)  # [0,1,2] [1,2,3] [2,3,4] [3,4,5]
    flags = scoring_windows(windows)
    assert flags == [[True, True, False], [False, True, False], [False, True, False], [False, True, True]]
    with pytest.raises(ValueError, match="stride"):
        clip_windows(6, 3, 4)


# ----------------------------------------------------------------------------- CamVid as video

# Annotated frames of each sequence, in frame order; names in CamVid's four patterns. 0001TP's
# numbers differ in width, so their order by name is not their order by number.
SEQUENCES = {
    "0001TP": ["0001TP_9990", "0001TP_10020", "0001TP_10050"],
    "0006R0": ["0006R0_f00930", "0006R0_f00960"],
    "0016E5": ["0016E5_00390", "0016E5_00420", "0016E5_00450", "0016E5_00480"],
    "Seq05VD": ["Seq05VD_f00000", "Seq05VD_f00030"],
}


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def camvid_video_tree(root: Path, split: str = "train", sequences=SEQUENCES) -> dict[str, int]:
    """A SegNet-layout split whose frame ``k`` (in SEQUENCES order) has pixel value ``k`` and
    label ``k % 11``; returns name -> k."""
    values = {}
    for k, name in enumerate(n for names in sequences.values() for n in names):
        _write(root / split / f"{name}.png", np.full((H, W, 3), k, dtype=np.uint8))
        _write(root / f"{split}annot" / f"{name}.png", np.full((H, W), k % 11, dtype=np.uint8))
        values[name] = k
    return values


def test_annotated_clips_group_order_and_stay_in_sequences(tmp_path):
    values = camvid_video_tree(tmp_path)
    camvid_video_tree(tmp_path, "val", {"0016E5": ["0016E5_07000", "0016E5_07030"]})
    dataset = CamVidVideo(tmp_path, "train", clip_length=3, stride=1)
    order = {name: i for names in SEQUENCES.values() for i, name in enumerate(names)}
    seen = []
    for index, clip in enumerate(dataset.samples):
        names = [f.name for f in clip.frames]
        sequences = {parse_frame_name(f.image)[0] for f in clip.frames}
        assert len(sequences) == 1, names  # never across sequences
        positions = [order[n] for n in names]
        (sequence,) = sequences
        if len(SEQUENCES[sequence]) >= 3:
            assert positions == list(range(positions[0], positions[0] + 3)), names  # consecutive, in frame order
        images, labels = dataset.load(index)
        assert [int(i[0, 0, 0]) for i in images] == [values[n] for n in names]
        assert [int(lb[0, 0]) for lb in labels] == [values[n] % 11 for n in names]
        item = dataset[index]
        assert item["image"].shape == (3, 3, H, W) and item["label"].shape == (3, H, W)
        seen += [n for n, s in zip(names, item["score"].tolist(), strict=True) if s]
    assert sorted(seen) == sorted(values)  # each annotated train frame scored once, no val frame
    assert dataset.samples[0].frames[0].name == "0001TP_9990"  # 9990 before 10020
    # A 2-frame sequence gives one clip, its last frame repeated.
    short = [c for c in dataset.samples if c.frames[0].name.startswith("0006R0")]
    assert len(short) == 1 and [f.name for f in short[0].frames] == ["0006R0_f00930", "0006R0_f00960"] * 1 + \
        ["0006R0_f00960"]
    assert len(CamVidVideo(tmp_path, "train", clip_length=3, stride=3)) == 1 + 1 + 2 + 1
    assert len(CamVidVideo(tmp_path, "val", clip_length=2)) == 1


def test_names_outside_the_layout_are_one_line_errors(tmp_path):
    camvid_video_tree(tmp_path, sequences={"0001TP": ["0001TP_006690", "0001TP-006720"]})
    with pytest.raises(DatasetError, match=r"0001TP-006720\.png: name does not fit the CamVid video layout") as info:
        CamVidVideo(tmp_path, "train")
    assert "\n" not in str(info.value)
    (tmp_path / "train" / "0001TP-006720.png").rename(tmp_path / "train" / "0001TP_f006690.png")
    (tmp_path / "trainannot" / "0001TP-006720.png").rename(tmp_path / "trainannot" / "0001TP_f006690.png")
    with pytest.raises(DatasetError, match="frame 6690 of sequence 0001TP also given by"):
        CamVidVideo(tmp_path, "train")


def test_raw_frame_clips_around_each_annotated_frame(tmp_path):
    camvid_video_tree(tmp_path, sequences={"0006R0": ["0006R0_f00930", "0006R0_f00960"]})
    raw = tmp_path / "frames" / "0006R0"
    for number in range(928, 963):  # the extracted video, twice the size, value = number % 200
        _write(raw / f"{number:05d}.png", np.full((2 * H, 2 * W, 3), number % 200, dtype=np.uint8))
    (raw / "notes.txt").write_text("not a frame")
    dataset = CamVidVideo(tmp_path, "train", clip_length=5, frames_root=tmp_path / "frames")
    assert len(dataset) == 2
    for clip, number, k in zip(dataset.samples, (930, 960), (0, 1), strict=True):
        images, labels = dataset.load(dataset.samples.index(clip))
        assert images.shape == (5, H, W, 3)
        # Frames number-2 .. number+2 (moved inward at the end: 958..962), the annotated one
        # from the SegNet image, the others resized video frames without labels.
        middle = 2
        expected = [n % 200 for n in range(number - 2, number + 3)]
        expected[middle] = k
        assert [int(i[0, 0, 0]) for i in images] == expected
        assert clip.scored == (False, False, True, False, False)
        assert (labels[middle] == k).all() and (np.delete(labels, middle, axis=0) == 255).all()
    # The last annotated frame near the end of the video: the window moves inward.
    (raw / "00961.png").unlink(), (raw / "00962.png").unlink()
    clip = CamVidVideo(tmp_path, "train", clip_length=5, frames_root=tmp_path / "frames").samples[1]
    assert [f.name for f in clip.frames][-1] == "0006R0_f00960" and clip.scored[-1]

    _write(raw / "frame_x.png", np.zeros((H, W, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"frame_x\.png: video frame name is not a frame number"):
        CamVidVideo(tmp_path, "train", frames_root=tmp_path / "frames")
    (raw / "frame_x.png").unlink()
    (raw / "00930.png").unlink()
    with pytest.raises(DatasetError, match=r"0006R0_f00930\.png: annotated frame 930 is not among the video frames"):
        CamVidVideo(tmp_path, "train", frames_root=tmp_path / "frames")
    with pytest.raises(DatasetError, match="no folder of video frames for sequence 0006R0"):
        CamVidVideo(tmp_path, "train", frames_root=tmp_path / "elsewhere")


# ----------------------------------------------------------------------------- augmentation


def _clip(seed: int, frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (frames, 40, 52, 3), dtype=np.uint8),
            rng.integers(0, 4, (frames, 40, 52), dtype=np.uint8))


def test_one_augmentation_draw_for_every_frame_of_a_clip():
    flip_lut = np.arange(256, dtype=np.uint8)
    flip_lut[[1, 2]] = [2, 1]  # a left/right pair: the flip must swap it in every frame
    transform = build_train_transform((24, 32), flip_lut=flip_lut, clips=True)
    frame_transform = build_train_transform((24, 32), flip_lut=flip_lut)
    assert isinstance(transform, ClipTransform)
    images, labels = _clip(0)
    for seed in range(4):
        transform.set_seed(seed)
        clip_images, clip_labels = transform(images, labels)
        assert clip_images.shape == (3, 3, 24, 32) and clip_labels.shape == (3, 24, 32)
        # Identical frames stay identical, and every frame is what the single-image transform
        # gives that frame with the same draw.
        same_images, _ = transform(np.repeat(images[:1], 3, 0), np.repeat(labels[:1], 3, 0))
        for t in range(3):
            torch.testing.assert_close(same_images[:, t], same_images[:, 0], rtol=0, atol=0)
            frame_transform.set_seed(seed)
            image_t, label_t = frame_transform(images[t], labels[t])
            torch.testing.assert_close(clip_images[:, t], image_t, rtol=0, atol=0)
            assert torch.equal(clip_labels[t], label_t)
    # Frame 0 all "left" (1), frame 1 all "right" (2): a flip swaps both or neither.
    pair = np.stack([np.full((40, 52), 1, np.uint8), np.full((40, 52), 2, np.uint8)])
    outcomes = set()
    for seed in range(12):
        transform.set_seed(seed)
        _, out = transform(images[:2], pair)
        values = tuple(tuple(sorted(set(out[t].unique().tolist()) - {255})) for t in range(2))
        assert values in {((1,), (2,)), ((2,), (1,))}, values
        outcomes.add(values)
    assert len(outcomes) == 2  # flipped and not flipped both drawn


def test_seeded_clip_samples_repeat_exactly(tmp_path):
    camvid_video_tree(tmp_path)
    dataset = CamVidVideo(tmp_path, "train", clip_length=3,
                          transform=build_train_transform((6, 8), scale_range=(0.8, 1.5), clips=True))
    seeded = SeededDataset(dataset)
    first, again, other = seeded[(2, 123)], seeded[(2, 123)], seeded[(2, 124)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert not torch.equal(first["image"], other["image"])
