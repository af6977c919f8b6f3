"""The ``ccnet evaluate|predict`` commands for ``task: detection`` (Mask R-CNN); ``ccnet train``
uses `DetectionTrainer` in place of the segmentation trainer.

``ccnet.cli`` calls these when the config (or the checkpoint's stored config) says
``task: detection``; the argument parsing is the commands' own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ccnet.config import Config, load_config
from ccnet.data.info import DatasetInfo
from ccnet.detection.model import mask_rcnn_from_config
from ccnet.detection.trainer import DetectionTrainer, check_detection_compatible
from ccnet.engine.checkpoint import checkpoint_config, load_checkpoint, load_checkpoint_weights
from ccnet.errors import CheckpointError, ConfigError

__all__ = ["DetectionTrainer", "evaluate", "model_from_checkpoint", "predict"]


def model_from_checkpoint(path: str, config_path: str | None, overrides: list[str]) -> tuple[Any, Config, DatasetInfo]:
    """Mask R-CNN (eval mode), config and class names of a ``ccnet train`` checkpoint. A config
    file given too must describe the same model; overrides apply on top."""
    checkpoint = load_checkpoint(path)
    config, info = checkpoint_config(checkpoint, path, config_path, overrides, check=check_detection_compatible)
    model = mask_rcnn_from_config(config, info.num_classes)
    load_checkpoint_weights(model, checkpoint, path)
    return model.eval(), config, info


def evaluate(args: argparse.Namespace, config_path: str | None, overrides: list[str]) -> int:
    """COCOeval (bbox and segm) of a checkpoint on ``data.val_split`` (or ``--split``), or of a
    COCO results JSON (``--predictions``) of any tool."""
    from ccnet.detection.data import CocoInstances
    from ccnet.detection.evaluate import coco_evaluate, evaluate_model, format_metrics, load_results
    from ccnet.engine.distributed import cleanup_distributed, init_distributed
    from ccnet.files import atomic_write_text

    try:
        if args.predictions is not None:
            config = load_config(config_path, overrides)
            if not config.data.root:
                raise ConfigError("config key 'data.root' is required to score a results file")
            dataset = CocoInstances.from_root(config.data.root, args.split or config.data.val_split,
                                              max_images=config.data.max_val_samples)
            results = load_results(args.predictions, dataset.coco)
            iou_types = ("bbox", "segm") if all("segmentation" in r for r in results) else ("bbox",)
            metrics = coco_evaluate(dataset.coco, results, iou_types=iou_types, image_ids=dataset.image_ids)
            ctx = init_distributed("cpu")
        else:
            model, config, info = model_from_checkpoint(args.checkpoint, config_path, overrides)
            if not config.data.root:
                raise ConfigError("config key 'data.root' is required: the COCO-layout folder to evaluate on")
            ctx = init_distributed(config.device)
            dataset = CocoInstances.from_root(config.data.root, args.split or config.data.val_split,
                                              max_images=config.data.max_val_samples)
            if dataset.info.class_names != info.class_names:
                raise CheckpointError(f"{args.checkpoint}: the model's classes {list(info.class_names)[:5]} "
                                      f"are not the categories of {dataset.annotation_path} "
                                      f"{list(dataset.info.class_names)[:5]}")
            metrics, _ = evaluate_model(model.to(ctx.device), dataset, device=ctx.device,
                                        progress=ctx.is_main and not getattr(args, "no_progress", False))
    finally:
        cleanup_distributed()
    if ctx.is_main:
        print(format_metrics(metrics))
        if args.output:
            atomic_write_text(args.output, json.dumps({**metrics, "class_names": list(dataset.info.class_names)},
                                                      indent=2))
            print(f"metrics written to {args.output}")
    return 0


def predict(args: argparse.Namespace, overrides: list[str], inputs: list[str]) -> int:
    """Draw the detections of each input image (PNG) and write them as JSON."""
    from ccnet.detection.visualize import predict_images
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs

    model, config, info = model_from_checkpoint(args.checkpoint, None, overrides)
    device = resolve_device(args.device or config.device)
    written = predict_images(model.to(device), collect_inputs(inputs), args.output, info=info, device=device,
                             score_thresh=config.detection.draw_score_thresh, progress=not args.no_progress)
    print(f"{len(written)} predictions written to {args.output} (<name>.png drawing, <name>.json detections)")
    return 0
