"""Prediction on videos with a video model (CCNet3D): a video file (read with OpenCV) or a folder
of frames in, per-frame label, colour and overlay PNGs out, and optionally an MP4 of the overlays.

Frames are read one at a time and segmented in consecutive clips of ``clip_length`` frames (the
last clip moved back to end at the last frame, predicting only the frames not yet done), so a
long video never sits in memory.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ccnet.data.clips import numbering_gaps
from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ccnet.data.io import DatasetError, DataWarning, read_image
from ccnet.engine.inference import infer
from ccnet.engine.predict import IMAGE_EXTENSIONS, blend, write_outputs
from ccnet.errors import UserFileNotFoundError
from ccnet.files import file_mode

__all__ = ["VIDEO_EXTENSIONS", "folder_gaps", "is_video_input", "predict_video", "read_frames"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
DEFAULT_FPS = 30.0


def is_video_input(path: str | Path) -> bool:
    """A video file (by extension) or a folder (of frames)."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS)


def _natural_key(path: Path) -> list[Any]:
    """``frame_2`` before ``frame_10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_frames(source: str | Path) -> tuple[Iterator[tuple[str, np.ndarray]], float | None]:
    """``(frames, fps)``: an iterator of ``(name, uint8 RGB (H, W, 3))`` in playing order and the
    video's frame rate (None for a folder). A folder's images are ordered by name, numbers
    numerically; a video file's frames are named ``<stem>_<index:06d>``.

    Nothing is dropped silently: a folder whose frame numbers skip some (see
    `folder_gaps`) gives a `ccnet.data.io.DataWarning` naming the gaps before the
    first frame; a video that ends before the frame count its container announces (damaged or
    truncated) gives one saying how many of how many were read, once the last frame is read; a
    video with no decodable frame is a `ccnet.data.io.DatasetError`."""
    source = Path(source)
    if source.is_dir():
        paths = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                       key=_natural_key)
        if not paths:
            raise UserFileNotFoundError(f"{source}: no frames ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
        gaps = folder_gaps(paths)
        if gaps:
            shown = "; ".join(gaps[:3]) + (f"; and {len(gaps) - 3} more" if len(gaps) > 3 else "")
            warnings.warn(f"{source}: the frame numbering has {len(gaps)} gap{'' if len(gaps) == 1 else 's'} "
                          f"({shown}); the frames on either side are treated as consecutive", DataWarning,
                          stacklevel=2)
        return ((p.stem, read_image(p)) for p in paths), None
    import cv2

    capture = cv2.VideoCapture(str(source))
    if not source.is_file() or not capture.isOpened():
        raise DatasetError(f"{source}: cannot open as a video (OpenCV could not read it)")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    announced = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)  # 0: unknown (a stream)

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield f"{source.stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        if index == 0:
            announces = f", of the {announced} its container announces" if announced else ""
            raise DatasetError(f"{source}: no frame could be decoded{announces} (the file is damaged or not a video)")
        if index < announced:
            warnings.warn(f"{source}: read {index} of the {announced} frames its container announces; the file is "
                          f"damaged or truncated after frame {index - 1}, the other {announced - index} are missing",
                          DataWarning, stacklevel=2)

    return frames(), fps


def folder_gaps(paths: Sequence[Path]) -> list[str]:
    """``"frame_0003 -> frame_0007 (3 missing)"`` for each gap in the numbering of a folder's frames
    (in playing order): where the number in their names jumps by more than its usual step
    (`ccnet.data.clips.numbering_gaps`). Names that do not all end in a number under one
    prefix and suffix have no numbering to check."""
    numbered = [re.fullmatch(r"(.*?)(\d+)(\D*)", p.stem) for p in paths]
    if not all(numbered) or len({(m[1], m[3]) for m in numbered}) != 1:
        return []
    names = {int(m[2]): p.stem for m, p in zip(numbered, paths, strict=True)}
    return [f"{names[a]} -> {names[b]}, {missing} missing" for a, b, missing in numbering_gaps(sorted(names))]


class _Mp4Writer:
    """Overlays into an MP4 (``mp4v``), written under a temporary name and renamed at the end."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                          (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write MP4 (mp4v) video here")
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool) -> None:
        if self.writer is not None:
            self.writer.release()
        if keep and self.tmp.exists():
            os.chmod(self.tmp, file_mode())
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def predict_video(
    model: nn.Module,
    source: str | Path,
    out_dir: str | Path,
    *,
    info: DatasetInfo,
    clip_length: int,
    device: torch.device | str = "cpu",
    infer_kwargs: dict[str, Any] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mp4: str | Path | None = None,
    fps: float | None = None,
    progress: bool = True,
) -> list[Path]:
    """Segment a video (file or folder of frames) with a video model, in clips of
    ``clip_length`` frames; writes ``<name>.png``, ``<name>_color.png`` and
    ``<name>_overlay.png`` per frame into ``out_dir`` and, with ``mp4``, the overlays as an MP4
    video at ``fps`` (default: the video's own rate, else 30). Returns the label PNG paths in
    frame order. ``infer_kwargs`` go to `ccnet.engine.inference.infer`."""
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")
    frames, video_fps = read_frames(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(infer_kwargs or {})
    if kwargs.get("flip") and kwargs.get("flip_lut") is None:
        kwargs["flip_lut"] = info.flip_lut()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    writer = _Mp4Writer(Path(mp4), fps or video_fps or DEFAULT_FPS) if mp4 is not None else None
    written: list[Path] = []
    size: tuple[int, int] | None = None

    def segment(clip: list[tuple[str, np.ndarray]], new: int) -> None:
        """Predict ``clip`` and write its last ``new`` frames."""
        x = torch.from_numpy(np.stack([frame for _, frame in clip])).to(device)  # (T, H, W, 3)
        x = (x.permute(3, 0, 1, 2)[None].float() - mean_t) / std_t
        preds = infer(model, x, num_classes=info.num_classes, **kwargs).argmax(1)[0]
        preds = preds.to(torch.uint8).cpu().numpy()
        for (name, frame), pred in list(zip(clip, preds, strict=True))[len(clip) - new:]:
            written.append(write_outputs(out_dir, name, frame, pred, info))
            if writer is not None:
                writer.write(blend(frame, info.colorize(pred)))
        bar.update(new)

    done = False
    try:
        with tqdm(desc="predict", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            previous: list[tuple[str, np.ndarray]] = []
            pending: list[tuple[str, np.ndarray]] = []
            for name, frame in frames:
                if size is None:
                    size = frame.shape[:2]
                elif frame.shape[:2] != size:
                    raise DatasetError(f"{source}: frame {name} is {frame.shape[1]}x{frame.shape[0]}, the first "
                                       f"frame {size[1]}x{size[0]}; a video's frames must share one size")
                pending.append((name, frame))
                if len(pending) == clip_length:
                    segment(pending, len(pending))
                    previous, pending = pending, []
            if pending:  # the last, short clip: completed with the frames before it
                context = previous[len(previous) - (clip_length - len(pending)):] if previous else []
                segment(context + pending, len(pending))
        done = True
    finally:
        if writer is not None:
            writer.close(keep=done)
    return written
