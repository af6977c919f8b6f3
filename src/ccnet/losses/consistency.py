"""Category consistent loss of CCNet (TPAMI 2020, Sec. 3.4).

Pulls the per-pixel embeddings of a class towards their class centre (``var``), pushes the centres
of different classes at least ``2 * delta_d`` apart (``dis``) and keeps centres near the origin
(``reg``): a discriminative loss that makes the features of one category consistent across the
image, which is what the criss-cross attention then aggregates.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.losses._utils import check_segmentation_inputs

VARIANTS = ("piecewise", "quadratic")
Variant = Literal["piecewise", "quadratic"]


class ConsistencyTerms(NamedTuple):
    """The three (unweighted) terms of the category consistent loss, each a scalar tensor."""

    var: Tensor
    dis: Tensor
    reg: Tensor

    def weighted_sum(self, alpha: float = 1.0, beta: float = 1.0, gamma: float = 0.001) -> Tensor:
        return alpha * self.var + beta * self.dis + gamma * self.reg


def _check_params(delta_v: float, delta_d: float, variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if not 0 <= delta_v < delta_d:
        raise ValueError(f"expected 0 <= delta_v < delta_d, got delta_v={delta_v}, delta_d={delta_d}")


def _phi_var(d: Tensor, delta_v: float, delta_d: float, variant: str) -> Tensor:
    """Pull penalty on the distance to the class centre: 0 within ``delta_v``, then quadratic;
    the piecewise variant turns linear beyond ``delta_d`` (continuous there) so outliers do not
    dominate the gradient."""
    quadratic = (d - delta_v).clamp_min(0) ** 2
    if variant == "quadratic":
        return quadratic
    return torch.where(d > delta_d, d - delta_d + (delta_d - delta_v) ** 2, quadratic)


def _phi_dis(d: Tensor, delta_d: float) -> Tensor:
    """Push penalty on the distance between two class centres: ``(2 delta_d - d)^2`` below ``2 delta_d``."""
    return (2 * delta_d - d).clamp_min(0) ** 2


def _norm(x: Tensor) -> Tensor:
    # vector_norm has a finite (zero) subgradient at 0, unlike sqrt(sum(x**2)), which gives NaN.
    return torch.linalg.vector_norm(x, dim=-1)


def category_consistent_terms(
    embedding: Tensor,
    target: Tensor,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    ignore_index: int = 255,
    variant: Variant = "piecewise",
) -> ConsistencyTerms:
    """The terms ``(var, dis, reg)`` of the category consistent loss.

    Args:
        embedding: (B, D, h, w) pixel embeddings (D = 16 in the paper).
        target: (B, H, W) integer labels, downsampled with nearest interpolation to (h, w).
        delta_v: pull margin: pixels closer than this to their class centre cost nothing.
        delta_d: push margin: centres further apart than ``2 * delta_d`` cost nothing.
        ignore_index: label of pixels that take no part in the loss.
        variant: ``"piecewise"`` (the paper's ``phi_var``, linear beyond ``delta_d``) or
            ``"quadratic"`` (``max(d - delta_v, 0)^2`` everywhere).

    With ``C`` the classes present in an image, ``mu_c`` the mean embedding of class ``c``
    and ``d_i = ||mu_c - h_i||``, per image::

        var = 1/|C| sum_c 1/N_c sum_{i in c} phi_var(d_i)
        dis = 1/(|C|(|C|-1)) sum_{a != b} phi_dis(||mu_a - mu_b||)     (0 when |C| < 2)
        reg = 1/|C| sum_c ||mu_c||

    and each term is averaged over the images with at least one labelled pixel (0, still in the
    graph, when there is none). All images are handled at once by grouping pixels per
    (image, class), so there is no Python loop and a single host sync.
    """
    _check_params(delta_v, delta_d, variant)
    check_segmentation_inputs(embedding, target, name="embedding")
    batch, dim, h, w = embedding.shape
    if embedding.dtype in (torch.float16, torch.bfloat16):
        embedding = embedding.float()
    if tuple(target.shape[-2:]) != (h, w):
        target = F.interpolate(target[:, None].float(), size=(h, w), mode="nearest")[:, 0]
    labels = target.long().reshape(-1)
    feats = embedding.permute(0, 2, 3, 1).reshape(-1, dim)
    image = torch.arange(batch, device=labels.device).repeat_interleave(h * w)

    valid = labels != ignore_index
    feats, labels, image = feats[valid], labels[valid], image[valid]
    if labels.numel() == 0:
        zero = embedding.sum() * 0
        return ConsistencyTerms(zero, zero, zero)

    # One group per (image, class) present; groups come sorted by image, then class.
    groups, group_of = torch.unique(torch.stack([image, labels], dim=1), dim=0, return_inverse=True)
    num_groups = groups.shape[0]
    group_image = groups[:, 0]
    group_size = torch.bincount(group_of, minlength=num_groups).to(feats.dtype)
    centres = feats.new_zeros(num_groups, dim).index_add_(0, group_of, feats) / group_size[:, None]

    def per_image(values: Tensor, index: Tensor) -> Tensor:
        return feats.new_zeros(batch).index_add_(0, index, values)

    # Pull: mean penalty within each class, then mean over the classes of the image.
    pull = _phi_var(_norm(feats - centres[group_of]), delta_v, delta_d, variant)
    pull_per_class = feats.new_zeros(num_groups).index_add_(0, group_of, pull) / group_size
    num_classes = torch.bincount(group_image, minlength=batch).to(feats.dtype)
    var = per_image(pull_per_class, group_image) / num_classes.clamp_min(1)

    # Push: each unordered pair of centres of the same image counts twice (ordered pairs).
    first, second = torch.triu_indices(num_groups, num_groups, offset=1, device=groups.device)
    same_image = group_image[first] == group_image[second]
    first, second = first[same_image], second[same_image]
    push = 2 * _phi_dis(_norm(centres[first] - centres[second]), delta_d)
    dis = per_image(push, group_image[first]) / (num_classes * (num_classes - 1)).clamp_min(1)

    reg = per_image(_norm(centres), group_image) / num_classes.clamp_min(1)

    labelled = num_classes > 0
    return ConsistencyTerms(var[labelled].mean(), dis[labelled].mean(), reg[labelled].mean())


def category_consistent_loss(
    embedding: Tensor,
    target: Tensor,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.001,
    ignore_index: int = 255,
    variant: Variant = "piecewise",
) -> Tensor:
    """``alpha * var + beta * dis + gamma * reg`` of `category_consistent_terms`."""
    terms = category_consistent_terms(embedding, target, delta_v, delta_d, ignore_index, variant)
    return terms.weighted_sum(alpha, beta, gamma)


class CategoryConsistentLoss(nn.Module):
    """Module form of `category_consistent_loss`; `terms` gives the three terms."""

    def __init__(
        self,
        delta_v: float = 0.5,
        delta_d: float = 1.5,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.001,
        ignore_index: int = 255,
        variant: Variant = "piecewise",
    ) -> None:
        super().__init__()
        _check_params(delta_v, delta_d, variant)
        self.delta_v = delta_v
        self.delta_d = delta_d
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.variant: Variant = variant

    def terms(self, embedding: Tensor, target: Tensor) -> ConsistencyTerms:
        return category_consistent_terms(
            embedding, target, self.delta_v, self.delta_d, self.ignore_index, self.variant
        )

    def combine(self, terms: ConsistencyTerms) -> Tensor:
        """Weighted sum of ``terms`` with this module's ``alpha``, ``beta``, ``gamma``."""
        return terms.weighted_sum(self.alpha, self.beta, self.gamma)

    def forward(self, embedding: Tensor, target: Tensor) -> Tensor:
        return self.combine(self.terms(embedding, target))

    def extra_repr(self) -> str:
        return (
            f"delta_v={self.delta_v}, delta_d={self.delta_d}, alpha={self.alpha}, beta={self.beta}, "
            f"gamma={self.gamma}, ignore_index={self.ignore_index}, variant={self.variant!r}"
        )
