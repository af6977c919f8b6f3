"""Datasets of the paper, users' own folders, a synthetic long-range-context dataset, transforms."""

from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DatasetInfo"]
