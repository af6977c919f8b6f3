"""CamVid as video: clips of consecutive frames of the SegNet-layout CamVid (the TPAMI setting).

The annotated frames are those of :mod:`ccnet.data.camvid` (``root/{split}/*.png`` with labels
in ``root/{split}annot/``; 367 train, 101 val, 233 test). Their names say which video they come
from and where: ``<sequence>_<frame number>`` or ``<sequence>_f<frame number>``; CamVid's four
sequences are named in four patterns::

    0001TP_006690.png   0006R0_f00930.png   0016E5_00390.png   Seq05VD_f00000.png

Frames are grouped by sequence and ordered by frame number within each split; clips never cross
a sequence or a split.

* **Annotated clips** (default): ``clip_length`` consecutive annotated frames (CamVid labels
  one frame in 30, at 1 Hz; 0016E5 one in 15), a clip starting every ``stride`` frames.
* **Raw-frame clips** (``frames_root``): a folder of all extracted video frames, one folder per
  sequence, files named by frame number::

      frames_root/0001TP/006690.png       (also 0001TP_006690.png or f006690.png; .png or .jpg)

  give one clip per annotated frame: ``clip_length`` consecutive video frames around it (moved
  inward at the ends of a video). Only the annotated frame has a label; the others carry the
  ignore label, so the loss and the metrics use the annotated frame alone. The annotated frame's
  own image is the SegNet one; video frames of another size (the extracted frames are 720x960,
  the SegNet images 360x480) are resized to it.

Any file that does not fit this layout stops the dataset with a one-line error naming it; a gap in
a sequence's frame numbers (beyond its usual step) is a :class:`~ccnet.data.io.DataWarning`
naming it.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from ccnet.data.base import Sample
from ccnet.data.camvid import CAMVID_INFO, CamVid
from ccnet.data.clips import Clip, ClipDataset, ClipPairTransform, clip_windows, numbering_gaps, scoring_windows
from ccnet.data.io import DatasetError, DataWarning, read_image

__all__ = ["FRAME_EXTENSIONS", "CamVidVideo", "parse_frame_name"]

_NAME = re.compile(r"(?P<sequence>[A-Za-z0-9]+)_f?(?P<number>\d+)")
_RAW_NAME = r"(?:{sequence}_)?f?(?P<number>\d+)"
NAMING = ("<sequence>_<frame number> or <sequence>_f<frame number> (0001TP_006690.png, 0006R0_f00930.png, "
          "0016E5_00390.png, Seq05VD_f00000.png)")
FRAME_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})


def parse_frame_name(path: Path) -> tuple[str, int]:
    """``(sequence, frame number)`` of an annotated CamVid frame, from its file name."""
    match = _NAME.fullmatch(path.stem)
    if match is None:
        raise DatasetError(f"{path}: name does not fit the CamVid video layout {NAMING}")
    return match["sequence"], int(match["number"])


def _sequences(samples: list[Sample]) -> dict[str, list[tuple[int, Sample]]]:
    """Annotated frames grouped by sequence, ordered by frame number."""
    sequences: dict[str, list[tuple[int, Sample]]] = defaultdict(list)
    for sample in samples:
        sequence, number = parse_frame_name(sample.image)
        sequences[sequence].append((number, sample))
    for sequence, frames in sequences.items():
        frames.sort(key=lambda item: item[0])
        for (a, first), (b, second) in itertools.pairwise(frames):
            if a == b:
                raise DatasetError(f"{second.image}: frame {b} of sequence {sequence} also given by {first.image}")
    return dict(sorted(sequences.items()))


def _raw_frames(frames_root: Path, sequence: str, needed_by: Path) -> list[tuple[int, Path]]:
    """The extracted video frames of ``sequence``, ordered by frame number."""
    folder = frames_root / sequence
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no folder of video frames for sequence {sequence} (needed by {needed_by}); "
                           f"expected frames_root/<sequence>/<frame number>.png")
    pattern = re.compile(_RAW_NAME.format(sequence=re.escape(sequence)))
    frames: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in FRAME_EXTENSIONS:
            continue
        match = pattern.fullmatch(path.stem)
        if match is None:
            raise DatasetError(f"{path}: video frame name is not a frame number; expected "
                               f"{folder}/<frame number>{path.suffix} (e.g. 006690{path.suffix})")
        number = int(match["number"])
        if number in frames:
            raise DatasetError(f"{path}: frame {number} of sequence {sequence} also given by {frames[number]}")
        frames[number] = path
    gaps = numbering_gaps(sorted(frames))
    if gaps:
        shown = "; ".join(f"{frames[a].name} -> {frames[b].name}, {missing} missing" for a, b, missing in gaps[:3])
        warnings.warn(f"{folder}: the video frame numbers of sequence {sequence} have {len(gaps)} "
                      f"gap{'' if len(gaps) == 1 else 's'} ({shown}{'; ...' if len(gaps) > 3 else ''}); clips across "
                      f"a gap hold frames that are not consecutive", DataWarning, stacklevel=2)
    return sorted(frames.items())


def _raw_clip(raw: list[tuple[int, Path]], sequence: str, number: int, annotated: Sample, clip_length: int,
              folder: Path) -> Clip:
    """``clip_length`` consecutive video frames around annotated frame ``number`` (moved inward
    at the ends of the video; a video shorter than a clip repeats its last frame)."""
    numbers = [n for n, _ in raw]
    position = int(np.searchsorted(numbers, number))
    if position == len(numbers) or numbers[position] != number:
        raise DatasetError(f"{annotated.image}: annotated frame {number} is not among the video frames in {folder}")
    start = min(max(position - (clip_length - 1) // 2, 0), max(len(raw) - clip_length, 0))
    frames: list[Sample] = []
    scored: list[bool] = []
    for index in (min(start + i, len(raw) - 1) for i in range(clip_length)):
        mine = index == position and not any(scored)
        frames.append(annotated if mine else Sample(raw[index][1], None, f"{sequence}_{raw[index][0]}"))
        scored.append(mine)
    return Clip(tuple(frames), tuple(scored), annotated.name)


class CamVidVideo(ClipDataset):
    """CamVid clips (SegNet layout, 11 classes). Splits ``train``, ``val``, ``test``.

    Args:
        root: the SegNet CamVid folder (see :class:`ccnet.data.CamVid`).
        clip_length: frames per clip (T; 5 in the TPAMI paper).
        stride: annotated clips start every ``stride`` annotated frames (1..clip_length).
        frames_root: optional folder of all extracted video frames (see the module docstring).

    ``frame_dataset`` is the split's :class:`~ccnet.data.CamVid` (the annotated frames one by
    one, as ``ccnet evaluate --predictions`` scores them).
    """

    info = CAMVID_INFO

    def __init__(self, root: str | Path, split: str, transform: ClipPairTransform | None = None, *,
                 clip_length: int = 5, stride: int = 1, frames_root: str | Path | None = None) -> None:
        self.frame_dataset = CamVid(root, split)
        self._index = {sample.image: i for i, sample in enumerate(self.frame_dataset.samples)}
        sequences = _sequences(self.frame_dataset.samples)
        clips = []
        for sequence, frames in sequences.items():
            if frames_root is None:
                samples = [sample for _, sample in frames]
                windows = clip_windows(len(samples), clip_length, stride)
                clips += [Clip(tuple(samples[i] for i in window), tuple(flags), samples[window[0]].name)
                          for window, flags in zip(windows, scoring_windows(windows), strict=True)]
            else:
                folder = Path(frames_root) / sequence
                raw = _raw_frames(Path(frames_root), sequence, frames[0][1].image)
                clips += [_raw_clip(raw, sequence, number, sample, clip_length, folder) for number, sample in frames]
        super().__init__(clips, CAMVID_INFO, transform)
        self.root, self.split, self.clip_length = Path(root), split, clip_length
        self.frames_root = None if frames_root is None else Path(frames_root)

    def read_frame(self, frame: Sample) -> tuple[np.ndarray, np.ndarray]:
        if frame.label is not None:
            return self.frame_dataset.load(self._index[frame.image])
        image = read_image(frame.image)
        return image, np.full(image.shape[:2], self.info.ignore_index, dtype=np.uint8)
