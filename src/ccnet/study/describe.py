"""Facts the reports quote, computed rather than retyped: a run's settings (from the plan and
:class:`ccnet.config.Config`), the distances from grey objects to their keys (from the scene
generator, at the size actually trained) and the commands that made a study, without local paths."""

from __future__ import annotations

import math
import shlex
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from ccnet.config import Config, apply_overrides

SCENES = 64  # validation scenes measured for the key distances (their layout only: cheap)


def study_config(settings: dict[str, Any], overrides: Iterable[str], seed: int = 0) -> Config:
    """The training config of one run from a plan's (or study.json's) settings and a variant's
    overrides: the default job with those changes."""
    from ccnet.study.plan import StudySettings

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
              if k in StudySettings.__dataclass_fields__}
    config = Config()
    config.seed = seed
    return apply_overrides(config, [*StudySettings(**fields).overrides(), *overrides])


def setting_text(config: Config) -> str:
    """The model and optimiser of a run in words, from its config."""
    m, o = config.model, config.optim
    clip = "no gradient clipping" if o.clip_grad_norm is None else f"gradient norm clipped at {o.clip_grad_norm:g}"
    return (f"{m.backbone} CCNet at output stride {m.output_stride}, head {m.head_channels} channels, "
            f"SGD lr {o.lr:g} (head x{o.head_lr_mult:g}), {clip}, "
            f"{config.data.synthetic_size[0]}x{config.data.synthetic_size[1]} scenes, "
            f"{o.iterations} iterations of batch {config.data.batch_size}")


@dataclass(frozen=True)
class Distances:
    """Gaps between each grey object and the key that decides its class (pixels, nearest edges),
    over generated validation scenes."""

    gaps: tuple[float, ...]
    size: tuple[int, int]

    def text(self) -> str:
        if not self.gaps:
            return "no grey objects in the measured scenes"
        return (f"{min(self.gaps):.0f}-{max(self.gaps):.0f} px (median {statistics.median(self.gaps):.0f}) "
                f"from its key at {self.size[0]}x{self.size[1]}")


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Euclidean gap between boxes ``(y, x, h, w)`` (0 when they touch or overlap)."""
    dy = max(0, max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2]))
    dx = max(0, max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3]))
    return math.hypot(dy, dx)


def key_distances(config: Config, scenes: int = SCENES) -> Distances:
    """:class:`Distances` on the first ``scenes`` validation scenes of ``config``'s synthetic task."""
    from ccnet.engine.build import build_val_dataset

    dataset = build_val_dataset(config)
    dataset = getattr(dataset, "dataset", dataset)  # a head of the validation set: its generator
    gaps = []
    for index in range(min(scenes, len(dataset))):
        layout = dataset.layout(index)
        keys = layout.get("keys") or [(*layout["key"], layout.get("key_class"))]
        for obj in layout["grey_objects"]:
            own = [key for key in keys if len(keys) == 1 or key[3] == obj[3]]
            gaps += [_gap((ky, kx, k, k), obj[1]) for ky, kx, k, *_ in own[:1]]
    size = config.data.synthetic_size
    return Distances(tuple(gaps), (int(size[0]), int(size[1])))


def neutral_command(command: str) -> str:
    """``command`` with an absolute ``--output`` folder written as ``runs/<its name>``: the report
    says how the study was made, not where on one machine."""
    parts = shlex.split(command)
    for i, part in enumerate(parts[:-1]):
        if part == "--output" and PurePath(parts[i + 1]).is_absolute():
            parts[i + 1] = f"runs/{PurePath(parts[i + 1]).name}"
    return " ".join(shlex.quote(p) for p in parts)


def commands_text(record: dict) -> str:
    """The command(s) that trained a study (its study.json), as Markdown code spans."""
    commands = record.get("commands") or [record.get("command", "ccnet reproduce")]
    return " and ".join(f"`{neutral_command(command)}`" for command in commands)
