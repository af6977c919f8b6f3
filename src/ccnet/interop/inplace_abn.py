"""InPlace-ABN norms (the official CCNet's) as plain BatchNorm parameters.

InPlace-ABN (Rota Bulò et al., CVPR 2018) computes, in inference,
``y = (x - running_mean) / sqrt(running_var + eps) * (|weight| + eps) + bias`` and then its
activation: the stored ``weight`` is not the scale, ``|weight| + eps`` is (the absolute value
keeps the scale invertible, which the in-place backward needs). A plain BatchNorm loaded with
the stored weight is wrong wherever a weight is negative. Storing ``|weight| + eps`` as the
BatchNorm weight gives exactly the same function.
"""

from __future__ import annotations

import torch

__all__ = ["ABN_EPS", "abn_weight_to_bn", "is_norm_weight", "norm_prefixes"]

ABN_EPS = 1e-5  # InPlace-ABN's default eps, used for the variance and for the weight alike


def abn_weight_to_bn(weight: torch.Tensor, eps: float = ABN_EPS) -> torch.Tensor:
    """The BatchNorm weight equivalent to an InPlace-ABN ``weight``: ``|weight| + eps`` (in at
    least float32: eps is below half precision's resolution)."""
    return weight.to(torch.promote_types(weight.dtype, torch.float32)).abs() + eps


def norm_prefixes(keys) -> set[str]:
    """Module prefixes of the norm layers of a state dict: those with a ``running_mean``."""
    suffix = ".running_mean"
    return {k[: -len(suffix)] for k in keys if k.endswith(suffix)}


def is_norm_weight(key: str, prefixes: set[str]) -> bool:
    """True for a norm's ``weight`` key."""
    prefix, _, leaf = key.rpartition(".")
    return leaf == "weight" and prefix in prefixes
