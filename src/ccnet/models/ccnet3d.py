"""CCNet3D: CCNet for video clips, with 3D criss-cross attention across the frames (TPAMI 2020).

A clip ``(B, 3, T, H, W)`` is segmented as ``B * T`` frames by the shared 2D network, except
for the attention: every feature position attends along its T-, H- and W-lines within its clip
(T + h + w - 2 positions, itself once), R times with shared weights. With R=1 an output voxel
depends on its three lines, with R=2 on the three planes through it, with R=3 on the whole
clip. Everything else (backbone, ``conva``/``convb``, the bottleneck fusion with the backbone
features, the classifier, the auxiliary head) runs per frame.

The parameters are exactly those of `ccnet.models.CCNet` (1x1 query/key/value
convolutions applied per frame), so a 2D checkpoint is a CCNet3D checkpoint and back: a 1-frame
clip gives the 2D model's logits (the temporal line of a voxel is the voxel itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ccnet.models.ccnet import CCNet
from ccnet.models.hub import read_pretrained_config, resolve_pretrained

__all__ = ["CCNet3D", "clips_to_frames", "frames_to_clips"]

# Attributes that travel with a model between formats (set by from_pretrained and converters).
_INFO_ATTRIBUTES = ("class_names", "palette", "mean", "std", "pretrained_source", "inference")


def clips_to_frames(x: Tensor) -> Tensor:
    """``(B, C, T, H, W)`` -> ``(B * T, C, H, W)``, the frames of each clip consecutive."""
    return x.transpose(1, 2).flatten(0, 1)


def frames_to_clips(x: Tensor, frames: int) -> Tensor:
    """``(B * T, C, H, W)`` -> ``(B, C, T, H, W)``: inverse of `clips_to_frames`."""
    return x.unflatten(0, (x.shape[0] // frames, frames)).transpose(1, 2)


class CCNet3D(CCNet):
    """CCNet on clips ``(B, 3, T, H, W)`` with 3D criss-cross attention; per-frame logits.

    Takes every argument of `ccnet.models.CCNet`, plus ``temporal``: ``True`` (default)
    for attention across the clip; ``False`` for attention within each frame only (the same
    network processing the clip frame by frame: the 2D baseline of the video experiments).

    ``forward(x)`` returns a dict with ``"out"`` ``(B, K, T, H, W)`` (``(B, K, T, h, w)`` with
    ``upsample=False``), in training mode also ``"aux"`` (same layout) and ``"embedding"``
    ``(B, D, T, h, w)``. Any T >= 1 works; T need not match the training clips.
    """

    def __init__(self, num_classes: int, *args: Any, temporal: bool = True, **kwargs: Any) -> None:
        super().__init__(num_classes, *args, **kwargs)
        if self.context != "rcca":
            raise ValueError(f"CCNet3D runs criss-cross attention across the clip: context must be 'rcca', "
                             f"got {self.context!r}")
        self.config["temporal"] = bool(temporal)
        self.temporal = bool(temporal)

    def forward(self, x: Tensor, upsample: bool = True) -> dict[str, Tensor]:
        if x.dim() != 5:
            raise ValueError(f"CCNet3D expects clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        frames = x.shape[2]
        stages = self.backbone(clips_to_frames(x))
        logits, embedding = self.head(stages[3], frames=frames if self.temporal else None)
        outputs = self._outputs(logits, embedding, stages)
        if upsample:
            outputs.update({name: self._resize(outputs[name], x.shape[-2:]) for name in ("out", "aux")
                            if name in outputs})
        return {name: frames_to_clips(value, frames) for name, value in outputs.items()}

    @classmethod
    def from_ccnet(cls, model: CCNet, *, temporal: bool = True, recurrence: int | None = None) -> CCNet3D:
        """The video model of a 2D `ccnet.models.CCNet`: same settings and weights
        (backbone, head convolutions, the attention's query/key/value projections, classifier,
        auxiliary head), copied; train/eval mode, device, dtype and the class names, palette and
        normalisation attributes follow ``model``. ``recurrence`` changes the number of loops
        (weights are shared over loops, so any R uses the same ones)."""
        if type(model) is not CCNet:
            raise TypeError(f"CCNet3D.from_ccnet needs a 2D CCNet, got {type(model).__name__}")
        config = dict(model.config)
        if recurrence is not None:
            config["recurrence"] = int(recurrence)
        parameter = next(model.parameters())
        video = cls(**config, temporal=temporal).to(device=parameter.device, dtype=parameter.dtype)
        video.load_state_dict(model.state_dict())
        for name in _INFO_ATTRIBUTES:
            if hasattr(model, name):
                setattr(video, name, getattr(model, name))
        return video.train(model.training)

    def to_ccnet(self) -> CCNet:
        """The 2D `ccnet.models.CCNet` with these weights (for single images)."""
        config = {k: v for k, v in self.config.items() if k != "temporal"}
        parameter = next(self.parameters())
        model = CCNet(**config).to(device=parameter.device, dtype=parameter.dtype)
        model.load_state_dict(self.state_dict())
        for name in _INFO_ATTRIBUTES:
            if hasattr(self, name):
                setattr(model, name, getattr(self, name))
        return model.train(self.training)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> CCNet3D:
        """A CCNet3D model folder as saved, or a 2D CCNet folder turned into the video model
        (`from_ccnet`); eval mode. ``directory`` may also be a Hub repo id (``revision=``)."""
        directory = resolve_pretrained(directory, kwargs.pop("revision", None))
        if read_pretrained_config(directory).get("architecture", "CCNet") == "CCNet":
            return cls.from_ccnet(CCNet.from_pretrained(directory, **kwargs))
        return super().from_pretrained(directory, **kwargs)
