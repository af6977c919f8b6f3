"""The CCNet training criterion: (OHEM) cross-entropy + auxiliary CE + category consistent loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ccnet.losses.consistency import CategoryConsistentLoss
from ccnet.losses.cross_entropy import cross_entropy
from ccnet.losses.ohem import ohem_cross_entropy


class SegmentationCriterion(nn.Module):
    """Total training loss of CCNet from the model's output dict.

    ``outputs`` keys:

    - ``"out"``: main logits (B, K, H, W), required;
    - ``"aux"``: auxiliary logits, used when present and ``aux_weight > 0`` (training mode);
    - ``"embedding"``: (B, D, h, w) features for the category consistent loss, required when
      ``consistency=True``.

    Logits are resized bilinearly to the target size when they differ. As in the official training
    code, OHEM (``ohem=True``) applies to the main output only; the auxiliary loss is plain CE::

        loss = main + aux_weight * aux + consistency

    where ``consistency = alpha * var + beta * dis + gamma * reg`` (weights and margins set with
    ``consistency_kwargs``, passed to `CategoryConsistentLoss`).

    ``forward`` returns ``(loss, logs)``: ``loss`` is the differentiable total; ``logs`` holds
    detached scalar tensors, unweighted, for logging (``"loss"``, ``"main"``, and when computed
    ``"aux"``, ``"consistency"`` (weighted sum), ``"consistency_var"``, ``"consistency_dis"``,
    ``"consistency_reg"``). They stay tensors so logging costs no host sync until ``.item()``.

    ``consistency_weight`` scales the consistency term of this call (a warm-up of its weight;
    logged as ``"consistency_weight"``). ``return_parts=True`` returns ``(loss, logs, parts)``
    with the differentiable terms ``parts["ce"]`` (main + weighted aux) and, with the consistency
    loss, ``parts["consistency"]`` (weighted): what the trainer needs to measure their gradients apart.
    """

    def __init__(
        self,
        aux_weight: float = 0.4,
        ohem: bool = False,
        ohem_thresh: float = 0.7,
        ohem_min_kept: int = 100_000,
        consistency: bool = False,
        consistency_kwargs: Mapping[str, Any] | None = None,
        ignore_index: int = 255,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        self.ohem = ohem
        self.ohem_thresh = float(ohem_thresh)
        self.ohem_min_kept = int(ohem_min_kept)
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.consistency: CategoryConsistentLoss | None = None
        if consistency:
            self.consistency = CategoryConsistentLoss(ignore_index=ignore_index, **(consistency_kwargs or {}))

    @staticmethod
    def _get(outputs: Mapping[str, Tensor], key: str, why: str) -> Tensor:
        if key not in outputs:
            raise ValueError(f"model outputs lack the key {key!r}, needed {why}; got keys {sorted(outputs)}")
        return outputs[key]

    def forward(self, outputs: Mapping[str, Tensor], target: Tensor, consistency_weight: float = 1.0,
                return_parts: bool = False) -> Any:
        out = self._get(outputs, "out", "for the main loss")
        if self.ohem:
            main = ohem_cross_entropy(
                out, target, self.ohem_thresh, self.ohem_min_kept, self.ignore_index, self.align_corners
            )
        else:
            main = cross_entropy(out, target, self.ignore_index, self.align_corners)
        loss = main
        logs = {"main": main.detach()}

        if "aux" in outputs and self.aux_weight > 0:
            aux = cross_entropy(outputs["aux"], target, self.ignore_index, self.align_corners)
            loss = loss + self.aux_weight * aux
            logs["aux"] = aux.detach()

        parts = {"ce": loss}
        if self.consistency is not None:
            embedding = self._get(outputs, "embedding", "by the category consistent loss (consistency=True)")
            terms = self.consistency.terms(embedding, target)
            consistency = self.consistency.combine(terms)
            parts["consistency"] = consistency_weight * consistency
            loss = loss + parts["consistency"]
            logs["consistency"] = consistency.detach()
            logs["consistency_weight"] = consistency.new_tensor(float(consistency_weight))
            logs["consistency_var"] = terms.var.detach()
            logs["consistency_dis"] = terms.dis.detach()
            logs["consistency_reg"] = terms.reg.detach()

        logs["loss"] = loss.detach()
        return (loss, logs, parts) if return_parts else (loss, logs)

    def extra_repr(self) -> str:
        parts = [f"aux_weight={self.aux_weight}", f"ohem={self.ohem}"]
        if self.ohem:
            parts += [f"ohem_thresh={self.ohem_thresh}", f"ohem_min_kept={self.ohem_min_kept}"]
        parts += [f"ignore_index={self.ignore_index}", f"align_corners={self.align_corners}"]
        return ", ".join(parts)


class ClipCriterion(nn.Module):
    """A per-image criterion applied to clips: every output ``(B, C, T, h, w)`` and the target
    ``(B, T, H, W)`` are scored as ``B * T`` images (frames of a clip consecutive). Frames
    without annotation carry the ignore label and add nothing."""

    def __init__(self, criterion: nn.Module) -> None:
        super().__init__()
        self.criterion = criterion

    def forward(self, outputs: Mapping[str, Tensor], target: Tensor, **kwargs: Any) -> Any:
        if target.dim() != 4:
            raise ValueError(f"clip labels must be (B, T, H, W), got shape {tuple(target.shape)}")
        frames = {name: value.transpose(1, 2).flatten(0, 1) for name, value in outputs.items()}
        return self.criterion(frames, target.flatten(0, 1), **kwargs)
