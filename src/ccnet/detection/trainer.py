"""Training Mask R-CNN with the engine's :class:`~ccnet.engine.trainer.Trainer`.

Everything that is not specific to the task is the engine's: SGD with the configured schedule
(Detectron's step schedule in the COCO configs) and warm-up, mixed precision, ``torchrun`` DDP
with SyncBatchNorm for ``norm: bn``, atomic checkpoints with exact resume (the seeded sampler seeds
the flip of every sample; Mask R-CNN's own sampling draws from the global RNG, which checkpoints
save), JSON-lines and TensorBoard logs. This subclass supplies the COCO datasets, the model
(whose forward returns its losses), COCOeval and drawings of the first validation images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ccnet.config import Config, ConfigError, config_from_dict
from ccnet.detection.data import CocoInstances, collate, train_transform
from ccnet.detection.evaluate import IOU_TYPES, STAT_NAMES, evaluate_model, format_metrics
from ccnet.detection.model import CONTEXTS, NORMS, init_backbone_from, load_mask_rcnn_weights, mask_rcnn_from_config
from ccnet.detection.visualize import draw_instances
from ccnet.engine.trainer import Trainer
from ccnet.files import atomic_write_text
from ccnet.nn import convert_sync_batchnorm

logger = logging.getLogger(__name__)

__all__ = ["MODEL_KEYS", "DetectionTrainer", "check_detection_compatible", "detection_datasets"]

# detection.* keys that change the weights' shapes or meaning: a checkpoint fixes them.
MODEL_KEYS = ("backbone", "context", "recurrence", "reduction", "norm", "fpn_channels", "box_head_channels",
              "mask_head_channels")


def check_config(config: Config) -> None:
    """One-line errors for detection settings the model cannot be built with."""
    det, data = config.detection, config.data
    if det.context not in CONTEXTS:
        raise ConfigError(f"config key 'detection.context' must be one of {', '.join(CONTEXTS)}, got {det.context!r}")
    if det.norm not in NORMS:
        raise ConfigError(f"config key 'detection.norm' must be one of {', '.join(NORMS)}, got {det.norm!r}")
    if not det.min_size:
        raise ConfigError("config key 'detection.min_size' needs at least one size")
    if det.context == "rcca" and det.recurrence < 1:
        raise ConfigError(f"config key 'detection.recurrence' must be >= 1 for the rcca block, got {det.recurrence}")
    if not data.root:
        raise ConfigError("config key 'data.root' is required for task 'detection' (a COCO-layout folder)")


def check_detection_compatible(checkpoint: dict[str, Any], config: Config, path: str | Path) -> None:
    """A checkpoint can only continue (or be evaluated as) the Mask R-CNN it was trained as."""
    if "config" not in checkpoint:
        return
    stored = config_from_dict(checkpoint["config"])
    if stored.task != "detection":
        raise ConfigError(f"{path}: checkpoint is a {stored.task} model, the config is for task 'detection'")
    for key in MODEL_KEYS:
        theirs, ours = getattr(stored.detection, key), getattr(config.detection, key)
        if theirs != ours:
            raise ConfigError(f"{path}: checkpoint was trained with detection.{key}={theirs!r} "
                              f"but the config has {ours!r}")


def detection_datasets(config: Config, split: str | None = None) -> tuple[CocoInstances, CocoInstances]:
    """The training and validation :class:`CocoInstances` of ``config.data`` (``split``: another
    validation split)."""
    check_config(config)
    data = config.data
    train = CocoInstances.from_root(data.root, data.train_split, train=True, transform=train_transform(data.flip))
    val = CocoInstances.from_root(data.root, split or data.val_split, max_images=data.max_val_samples)
    if val.info.class_names != train.info.class_names:
        raise ConfigError(f"{data.root}: splits {data.train_split!r} and {split or data.val_split!r} have different "
                          f"categories")
    return train, val


class DetectionTrainer(Trainer):
    """:class:`~ccnet.engine.trainer.Trainer` for ``task: detection`` configs (Mask R-CNN on COCO data)."""

    def _build_datasets(self) -> tuple[Any, Any]:
        return detection_datasets(self.config)

    def _build_model(self) -> nn.Module:
        config, det = self.config, self.config.detection
        model = mask_rcnn_from_config(config, self.info.num_classes)
        if self.resume is None:
            if det.pretrained:
                load_mask_rcnn_weights(model, det.pretrained)
            elif config.pretrained_backbone:
                init_backbone_from(model, config.pretrained_backbone)
        if self.ctx.distributed and det.norm == "bn":
            model = convert_sync_batchnorm(model, native=self.ctx.device.type == "cuda")
        return model

    def _find_unused_parameters(self) -> bool:
        return False

    def _build_criterion(self) -> None:
        return None  # torchvision's Mask R-CNN computes its losses in forward

    def _check_compatible(self, checkpoint: dict[str, Any], path: str | Path) -> None:
        check_detection_compatible(checkpoint, self.config, path)

    def _collate(self) -> Any:
        return collate

    def _describe(self) -> str:
        det = self.config.detection
        block = {"rcca": f"RCCA R={det.recurrence}", "nonlocal": "non-local", "none": "no context block"}[det.context]
        return f"Mask R-CNN {det.backbone}-FPN, {block} before the last block of layer3"

    def _forward_loss(self, batch: list[dict[str, Any]], iteration: int = 0) -> tuple[
            torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Total loss, its scalar logs, and no separately measured parts (Mask R-CNN's losses)."""
        device = self.ctx.device
        images = [sample["image"].to(device, non_blocking=True) for sample in batch]
        targets = [{k: v.to(device, non_blocking=True) for k, v in sample["target"].items()} for sample in batch]
        losses = self.ddp(images, targets)
        loss = sum(losses.values())
        return loss, {"loss": loss.detach(), **{k: v.detach() for k, v in losses.items()}}, {}

    def _evaluate(self, iteration: int, final: bool = False) -> dict[str, dict[str, float]]:
        metrics, _ = evaluate_model(self.model, self.val_set, device=self.ctx.device, progress=self.progress)
        summary: dict[str, Any] = {"iteration": iteration, "type": "eval"}
        for iou_type in IOU_TYPES:
            summary.update({f"{iou_type}_{name}": metrics[iou_type][name] for name in STAT_NAMES})
        self._log(summary)
        if self.ctx.is_main:
            logger.info(format_metrics(metrics))
            if final:
                result = {"iteration": iteration, **metrics, "class_names": list(self.info.class_names)}
                atomic_write_text(self.output_dir / "metrics.json", json.dumps(result, indent=2))
        return metrics

    def _save_model(self) -> None:
        """Nothing beyond the checkpoint: ``checkpoints/latest.pt`` is what evaluate/predict read."""

    @torch.inference_mode()
    def _visualize(self) -> None:
        """Ground truth | detections (score >= detection.draw_score_thresh) for the first
        validation images, under ``predictions/``."""
        if not self.ctx.is_main or self.config.num_visualizations <= 0:
            return
        out_dir = self.output_dir / "predictions"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        for i in range(min(self.config.num_visualizations, len(self.val_set))):
            image, target = self.val_set.load(i)
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255).to(self.ctx.device)
            output = {k: v.cpu() for k, v in self.model([tensor])[0].items()}
            truth = draw_instances(image, target, self.info)
            found = draw_instances(image, output, self.info, score_thresh=self.config.detection.draw_score_thresh)
            strip = np.concatenate([truth, found], axis=1)
            name = Path(self.val_set.image_info(i)["file_name"]).stem
            Image.fromarray(strip).save(out_dir / f"{name}.png")
            if self.writer is not None:
                self.writer.add_image(f"predictions/{i}", strip, dataformats="HWC")
