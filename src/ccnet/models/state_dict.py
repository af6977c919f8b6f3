"""Loading weights into a model with exact checks, and the error that names what does not fit.

Used by `ccnet.models.hub` (our own folders) and `ccnet.interop` (published weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from ccnet.errors import CCNetError

__all__ = ["WeightsMismatchError", "load_state_dict_checked"]

_SHOWN = 5  # key names shown per kind of mismatch


class WeightsMismatchError(CCNetError, ValueError):
    """Weights that do not fit the model. ``missing``: model keys the file does not provide;
    ``unexpected``: file keys the model has no place for; ``shape_conflicts``: ``(name, file
    shape, model shape)``. Names are the file's own where they differ from the model's."""

    def __init__(self, source: str, *, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 shape_conflicts: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
                 target: str = "the model", note: str | None = None) -> None:
        self.source = source
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.shape_conflicts = list(shape_conflicts)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_names(self.unexpected)})")
        if self.shape_conflicts:
            shown = ", ".join(f"{name}: file {list(a)} vs model {list(b)}"
                              for name, a, b in self.shape_conflicts[:_SHOWN])
            more = f", ... {len(self.shape_conflicts) - _SHOWN} more" if len(self.shape_conflicts) > _SHOWN else ""
            parts.append(f"{len(self.shape_conflicts)} shape conflicts ({shown}{more})")
        message = f"{source}: weights do not fit {target}: " + "; ".join(parts) if parts else f"{source}: {note}"
        if parts and note:
            message += f". {note}"
        super().__init__(message)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def load_state_dict_checked(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *,
                            origin: Mapping[str, str] | None = None, unmapped: Iterable[str] = (),
                            source_name: Callable[[str], str] | None = None,
                            target: str | None = None, optional: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(state, strict=True)`` with a precise report instead of a wall of text.

    BatchNorm ``num_batches_tracked`` counters absent from ``state`` (InPlace-ABN and older files
    have none) keep the module's value, and counters the module has no place for (frozen norms)
    are dropped. Module keys starting with one of ``optional`` (layers the source cannot have,
    such as a context block added to a pretrained network) keep their values when absent. Raises
    `WeightsMismatchError` on any missing, unexpected or wrongly shaped tensor, naming them
    the way the file does.
    """
    origin = origin or {}
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("num_batches_tracked")}

    def file_name(key: str) -> str:
        return origin.get(key, key)

    def wanted_name(key: str) -> str:
        name = source_name(key) if source_name else key
        return name if name == key else f"{name} (model: {key})"

    missing = [wanted_name(k) for k in expected
               if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(optional)]
    unexpected = list(unmapped) + [file_name(k) for k in state if k not in expected]
    conflicts = [(file_name(k), tuple(v.shape), tuple(expected[k].shape))
                 for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or conflicts:
        raise WeightsMismatchError(source, missing=missing, unexpected=unexpected, shape_conflicts=conflicts,
                                   target=target or f"this {type(module).__name__}")
    full = dict(state)
    for key, value in expected.items():
        full.setdefault(key, value)
    module.load_state_dict(full, strict=True)
