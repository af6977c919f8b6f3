"""Losses: pixel-wise (OHEM) cross-entropy, the category consistent loss, the training criterion."""

from ccnet.losses.consistency import (
    CategoryConsistentLoss,
    ConsistencyTerms,
    category_consistent_loss,
    category_consistent_terms,
)
from ccnet.losses.criterion import ClipCriterion, SegmentationCriterion
from ccnet.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from ccnet.losses.ohem import OhemCrossEntropyLoss, ohem_cross_entropy, ohem_keep_mask

__all__ = [
    "CategoryConsistentLoss",
    "ClipCriterion",
    "ConsistencyTerms",
    "CrossEntropyLoss",
    "OhemCrossEntropyLoss",
    "SegmentationCriterion",
    "category_consistent_loss",
    "category_consistent_terms",
    "cross_entropy",
    "ohem_cross_entropy",
    "ohem_keep_mask",
]
