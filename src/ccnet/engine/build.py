"""Build datasets, model, criterion and inference settings from a `ccnet.config.Config`."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch.utils.data import Subset

from ccnet.config import VIDEO_DATASETS, Config, ConfigError
from ccnet.data.info import DatasetInfo
from ccnet.losses import ClipCriterion, SegmentationCriterion
from ccnet.models import CCNet, CCNet3D


class DatasetHead(Subset):
    """The first ``n`` samples of a dataset, keeping its ``info``, ``samples`` and ``load``."""

    def __init__(self, dataset: Any, n: int) -> None:
        super().__init__(dataset, range(min(n, len(dataset))))
        self.info: DatasetInfo = dataset.info

    @property
    def samples(self) -> list[Any]:
        return [self.dataset.samples[i] for i in self.indices]

    def load(self, index: int) -> Any:
        return self.dataset.load(self.indices[index])


SYNTHETIC_DATASETS = ("synthetic", "synthetic_video")


def synthetic_stream(config: Config, split: str) -> str:
    """The synthetic stream a split name means: ``"train"`` for ``data.train_split``, ``"val"``
    for ``data.val_split``. Any other name is refused (the synthetic datasets have no test split,
    and a typo must not quietly score the validation scenes)."""
    data = config.data
    streams = {data.val_split: "val", data.train_split: "train"}  # the same name twice: the training stream
    if split not in streams:
        raise ConfigError(f"split {split!r}: the {data.dataset} dataset has the splits {data.train_split!r} "
                          f"(data.train_split) and {data.val_split!r} (data.val_split)")
    return streams[split]


def _synthetic_samples(config: Config, stream: str, evaluation: bool) -> int | None:
    """How many scenes: the training stream's default length to train on; ``data.synthetic_val_samples``
    to score, whichever stream (the training stream's 100,000 scenes are a sampling range, not a
    test set to score one by one)."""
    return None if stream == "train" and not evaluation else config.data.synthetic_val_samples


def build_video_dataset(config: Config, split: str, *, evaluation: bool = False) -> Any:
    """The clip dataset of ``config.data`` / ``config.video`` for ``split`` (``evaluation``: to
    score, see `build_dataset`)."""
    data, video = config.data, config.video
    training = split == data.train_split
    if data.dataset == "synthetic_video":
        from ccnet.data.synthetic_video import SyntheticVideoDataset

        stream = synthetic_stream(config, split)
        return SyntheticVideoDataset(stream, num_samples=_synthetic_samples(config, stream, evaluation),
                                     size=tuple(data.synthetic_size), clip_length=video.clip_length,
                                     seed=config.seed)
    from ccnet.data.camvid_video import CamVidVideo

    if not data.root:
        raise ConfigError(f"config key 'data.root' is required for dataset {data.dataset!r}")
    stride = video.clip_stride if training else (video.eval_clip_stride or video.clip_length)
    if not 1 <= stride <= video.clip_length:
        key = "video.clip_stride" if training else "video.eval_clip_stride"
        raise ConfigError(f"config key {key!r} must be between 1 and video.clip_length={video.clip_length} "
                          f"(every annotated frame in a clip), got {stride}")
    return CamVidVideo(data.root, split, clip_length=video.clip_length, stride=stride,
                       frames_root=video.frames_root)


def build_dataset(config: Config, split: str, *, evaluation: bool = False) -> Any:
    """The dataset of ``config.data`` for ``split`` (train transforms are added by the trainer).

    The synthetic datasets know two splits, ``data.train_split`` and ``data.val_split`` (others are
    refused); to score (``evaluation``), either has ``data.synthetic_val_samples`` scenes."""
    data = config.data
    if config.is_video:
        return build_video_dataset(config, split, evaluation=evaluation)
    if data.dataset == "synthetic":
        from ccnet.data.synthetic import SyntheticContextDataset
        from ccnet.data.synthetic_columns import ColumnsSyntheticDataset
        from ccnet.data.synthetic_two_keys import TwoKeySyntheticDataset

        tasks = {"one_key": SyntheticContextDataset, "two_keys": TwoKeySyntheticDataset,
                 "columns": ColumnsSyntheticDataset}
        stream = synthetic_stream(config, split)
        return tasks[data.synthetic_task](
            stream,
            num_samples=_synthetic_samples(config, stream, evaluation),
            size=tuple(data.synthetic_size),
            seed=config.seed,
            aligned_prob=data.synthetic_aligned_prob,
        )
    from ccnet.data import DATASETS
    from ccnet.data import build_dataset as build_named

    if data.dataset not in DATASETS:
        raise ConfigError(
            f"config key 'data.dataset': unknown dataset {data.dataset!r}; "
            f"expected one of {', '.join([*DATASETS, 'synthetic', *VIDEO_DATASETS])}"
        )
    if not data.root:
        raise ConfigError(f"config key 'data.root' is required for dataset {data.dataset!r}")
    return build_named(data.dataset, data.root, split)


def build_train_dataset(config: Config) -> Any:
    """Training set with the paper's augmentation (scale, crop, flip with label swap, photometric).

    The synthetic dataset draws a fresh scene for every index, so it is used as rendered: its
    meaning is in exact colours and positions that photometric or geometric jitter would blur.
    """
    dataset = build_dataset(config, config.data.train_split)
    if not getattr(dataset, "has_labels", True):
        raise ConfigError(f"config key 'data.train_split': split {config.data.train_split!r} has no labels to train on")
    if config.data.dataset not in SYNTHETIC_DATASETS:
        from ccnet.data.transforms import build_train_transform

        data = config.data
        dataset.transform = build_train_transform(
            tuple(data.crop_size),
            scale_range=tuple(data.scale_range),
            flip=data.flip,
            flip_lut=dataset.info.flip_lut() if dataset.info.flip_pairs else None,
            photometric=data.photometric,
            mean=tuple(data.mean),
            std=tuple(data.std),
            ignore_index=dataset.info.ignore_index,
            clips=config.is_video,
        )
    return dataset


def build_val_dataset(config: Config, split: str | None = None) -> Any:
    dataset = build_dataset(config, split or config.data.val_split, evaluation=True)
    if config.data.dataset not in SYNTHETIC_DATASETS:
        from ccnet.data.transforms import build_eval_transform

        dataset.transform = build_eval_transform(mean=tuple(config.data.mean), std=tuple(config.data.std),
                                                 clips=config.is_video)
    if config.data.max_val_samples is not None:
        dataset = DatasetHead(dataset, config.data.max_val_samples)
    return dataset


def build_model(config: Config, num_classes: int) -> CCNet:
    """CCNet, or for a video dataset CCNet3D (``video.attention``: across the clip or per frame)."""
    kwargs = dict(consistency=config.loss.consistency, **dataclasses.asdict(config.model))
    if config.is_video:
        return CCNet3D(num_classes, temporal=config.video.attention == "3d", **kwargs)
    return CCNet(num_classes, **kwargs)


def build_criterion(config: Config, ignore_index: int = 255) -> SegmentationCriterion | ClipCriterion:
    """The training loss; for clips, the same loss over their frames (`ClipCriterion`)."""
    criterion = _image_criterion(config, ignore_index)
    return ClipCriterion(criterion) if config.is_video else criterion


def _image_criterion(config: Config, ignore_index: int) -> SegmentationCriterion:
    loss = config.loss
    return SegmentationCriterion(
        aux_weight=loss.aux_weight if config.model.aux else 0.0,
        ohem=loss.ohem,
        ohem_thresh=loss.ohem_thresh,
        ohem_min_kept=loss.ohem_min_kept,
        consistency=loss.consistency,
        consistency_kwargs=dict(
            delta_v=loss.consistency_delta_v,
            delta_d=loss.consistency_delta_d,
            alpha=loss.consistency_alpha,
            beta=loss.consistency_beta,
            gamma=loss.consistency_gamma,
            variant=loss.consistency_variant,
        ),
        ignore_index=ignore_index,
        align_corners=config.model.align_corners,
    )


def infer_kwargs(config: Config, info: DatasetInfo) -> dict[str, Any]:
    """Keyword arguments of `ccnet.engine.inference.infer` for ``config.eval``."""
    ev = config.eval
    if ev.mode == "slide" and not ev.crop_size:
        raise ConfigError("config key 'eval.crop_size' is required when eval.mode is 'slide'")
    return dict(
        mode=ev.mode,
        crop_size=tuple(ev.crop_size) if ev.crop_size else None,
        stride=tuple(ev.stride) if ev.stride else None,
        scales=tuple(ev.scales),
        flip=ev.flip,
        flip_lut=info.flip_lut() if ev.flip and info.flip_pairs else None,
        align_corners=config.model.align_corners,
    )
