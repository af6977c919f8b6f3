"""Normalisation and activation layers, chosen by name.

The backbone uses a plain norm followed by a separate ``relu`` module (torchvision layout, so
torchvision weights load as-is). The heads use a fused *norm + activation* layer, the way the
official CCNet uses InPlace-ABN: ``head.conva.1`` holds the norm's parameters and also applies
the activation, so state-dict keys map 1:1 onto the published checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ccnet.nn.sync_batchnorm import SyncBatchNorm

NORMS = ("bn", "syncbn", "gn", "frozenbn")
ACTIVATIONS = ("relu", "leaky_relu", "identity")


def make_activation(name: str) -> nn.Module:
    """Activation by name: ``relu``, ``leaky_relu`` (slope 0.01, as InPlace-ABN) or ``identity``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with fixed statistics and affine parameters (never updated, never trained).

    Keeps the exact state-dict layout of ``nn.BatchNorm2d`` so ImageNet weights load unchanged.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(num_features, eps=eps, **kwargs)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class _ActMixin:
    """Applies ``self.act`` after the norm's own forward; adds no parameters."""

    act: nn.Module

    def _set_act(self, act: str) -> None:
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))  # type: ignore[misc]


class BatchNormAct2d(_ActMixin, nn.BatchNorm2d):
    def __init__(self, num_features: int, act: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self._set_act(act)


class SyncBatchNormAct2d(_ActMixin, SyncBatchNorm):
    def __init__(self, num_features: int, act: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self._set_act(act)


class FrozenBatchNormAct2d(_ActMixin, FrozenBatchNorm2d):
    def __init__(self, num_features: int, act: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self._set_act(act)


class GroupNormAct(_ActMixin, nn.GroupNorm):
    def __init__(self, num_groups: int, num_channels: int, act: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_groups, num_channels, **kwargs)
        self._set_act(act)


def _num_groups(channels: int, preferred: int = 32) -> int:
    """Largest divisor of ``channels`` not above ``preferred`` (GroupNorm needs an exact split)."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def make_norm(kind: str, channels: int, act: str | None = None) -> nn.Module:
    """Norm layer by name, optionally fused with an activation.

    ``kind``: ``bn`` (BatchNorm2d), ``syncbn`` (`SyncBatchNorm`, for multi-process training on
    GPUs or CPUs), ``gn``
    (GroupNorm, 32 groups or the largest divisor below) or ``frozenbn`` (fixed statistics).
    ``act``: ``None`` for the plain norm, else an activation name applied after it.
    """
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")
    if act is None:
        if kind == "bn":
            return nn.BatchNorm2d(channels)
        if kind == "syncbn":
            return SyncBatchNorm(channels)
        if kind == "frozenbn":
            return FrozenBatchNorm2d(channels)
        return nn.GroupNorm(_num_groups(channels), channels)
    if kind == "bn":
        return BatchNormAct2d(channels, act=act)
    if kind == "syncbn":
        return SyncBatchNormAct2d(channels, act=act)
    if kind == "frozenbn":
        return FrozenBatchNormAct2d(channels, act=act)
    return GroupNormAct(_num_groups(channels), channels, act=act)


class NativeSyncBatchNormAct2d(_ActMixin, nn.SyncBatchNorm):
    """PyTorch's ``nn.SyncBatchNorm`` (fused CUDA kernels, one collective each way) followed by
    the activation: `SyncBatchNormAct2d` for CUDA training. Same state-dict keys."""

    def __init__(self, num_features: int, act: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self._set_act(act)


def convert_sync_batchnorm(module: nn.Module, native: bool = False) -> nn.Module:
    """Replace every BatchNorm (plain or fused with an activation) by its SyncBatchNorm twin.

    ``native=False``: `ccnet.nn.sync_batchnorm.SyncBatchNorm`, which runs on any device,
    CPU/gloo included. ``native=True`` (CUDA training): ``torch.nn.SyncBatchNorm``, whose fused
    kernels need one collective forward and one backward per layer instead of two each, and keep
    no float32 copies of the activations. Either way the fused activation of the head norms is
    kept (``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` would drop it), and so are the
    state-dict keys, the values, ``requires_grad`` and train/eval mode. Frozen norms are left
    alone. Returns the (possibly new) root module.
    """
    plain, fused = (nn.SyncBatchNorm, NativeSyncBatchNormAct2d) if native else (SyncBatchNorm, SyncBatchNormAct2d)
    if isinstance(module, FrozenBatchNorm2d) or type(module) in (plain, fused):
        return module
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        kwargs: dict[str, Any] = dict(eps=module.eps, momentum=module.momentum, affine=module.affine,
                                      track_running_stats=module.track_running_stats)
        if isinstance(module, _ActMixin):
            converted = fused(module.num_features, **kwargs)
            converted.act = module.act
        else:
            converted = plain(module.num_features, **kwargs)
        converted.load_state_dict(module.state_dict())
        for name, parameter in module.named_parameters(recurse=False):
            getattr(converted, name).requires_grad_(parameter.requires_grad)
        converted.train(module.training)
        converted.to(device=next(module.parameters(), torch.empty(0)).device)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, native))
    return converted
