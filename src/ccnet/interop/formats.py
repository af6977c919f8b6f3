"""What every format converter returns (`Converted`), and the ResNet recognised from a
state dict's block counts; shared by `ccnet.interop.official`, `ccnet.interop.mmseg`,
`ccnet.interop.torchvision` and `ccnet.interop.loading`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ccnet.models.state_dict import WeightsMismatchError

__all__ = ["Converted", "resnet_arch"]


@dataclass
class Converted:
    """A foreign state dict renamed (and, where needed, transformed) into ccnet's key names.

    ``state`` uses CCNet keys (``backbone.*``, ``head.*``, ``aux_head.*``) for ``kind="model"``
    and ResNet keys (``conv1.weight``, ``layer1.0.bn1.bias``, ...) for ``kind="backbone"``.
    ``origin`` maps each ccnet key back to the file's key, ``unmapped`` lists file keys with no
    ccnet counterpart (reported as unexpected), ``dropped`` file keys deliberately not used
    (an ImageNet classifier, loss-function buffers). ``source_name`` gives a model key's name in
    the file's convention, for reporting missing keys.
    """

    format: str
    kind: str  # "model" or "backbone"
    state: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    source_name: Callable[[str], str] | None = None
    arch: str | None = None  # resnet name, from the block counts
    preset: str | None = None  # CCNet preset (kind="model")
    preset_overrides: dict[str, Any] = field(default_factory=dict)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # ResNet settings of the source
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def backbone_part(self) -> Converted:
        """The backbone of a full-model conversion, keyed as a `ResNet`; the heads are left out."""
        if self.kind == "backbone":
            return self
        prefix = "backbone."
        state = {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}
        origin = {k[len(prefix):]: self.origin.get(k, k) for k in self.state if k.startswith(prefix)}
        source_name = self.source_name
        return Converted(
            format=self.format, kind="backbone", state=state, origin=origin,
            unmapped=[k for k in self.unmapped if not _is_head_key(k)], dropped=self.dropped,
            source_name=(lambda key: source_name(prefix + key)) if source_name else None,
            arch=self.arch, backbone_kwargs=self.backbone_kwargs, mean=self.mean, std=self.std,
        )


def _is_head_key(key: str) -> bool:
    return key.startswith(("head.", "dsn.", "decode_head.", "auxiliary_head.", "aux_head."))


_BLOCK_COUNTS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


def resnet_arch(keys: Iterable[str], source: str, prefix: str = "") -> str:
    """ResNet name from the block counts of ``{prefix}layerN.i.*`` keys."""
    keys = list(keys)
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^{re.escape(prefix)}layer{stage}\.(\d+)\.")
        indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
        counts.append(max(indices) + 1 if indices else 0)
    block = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in keys else "basic"
    arch = _BLOCK_COUNTS.get((block, tuple(counts)))
    if arch is None:
        raise WeightsMismatchError(source, note=f"not a known ResNet: {block} blocks {counts} in "
                                                f"{prefix}layer1..4 (known: ResNet-18/34/50/101/152)")
    return arch
