"""The ``ccnet train|evaluate|predict`` commands for ``task: detection`` (Mask R-CNN).

``ccnet.cli`` calls these when the config (or the checkpoint's stored config) says
``task: detection``; the argument parsing is the commands' own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ccnet.config import Config, apply_overrides, config_from_dict, load_config
from ccnet.data.info import DatasetInfo

__all__ = ["evaluate", "model_from_checkpoint", "predict", "train"]


def train(args: argparse.Namespace, config: Config) -> int:
    from ccnet.detection.trainer import DetectionTrainer
    from ccnet.engine.distributed import cleanup_distributed

    try:
        trainer = DetectionTrainer(config, output_dir=args.output, resume=args.resume, stop_after=args.stop_after,
                                   progress=not args.no_progress)
        result = trainer.fit()
    finally:
        cleanup_distributed()
    if trainer.ctx.is_main:
        print(f"run directory: {result.output_dir}")
    return 0


def model_from_checkpoint(path: str, config_path: str | None, overrides: list[str]) -> tuple[Any, Config, DatasetInfo]:
    """Mask R-CNN (eval mode), config and class names of a ``ccnet train`` checkpoint. A config
    file given too must describe the same model; overrides apply on top."""
    from ccnet.detection.model import mask_rcnn_from_config
    from ccnet.detection.trainer import check_detection_compatible
    from ccnet.engine.checkpoint import load_checkpoint
    from ccnet.engine.trainer import info_from_dict

    checkpoint = load_checkpoint(path)
    if config_path is not None:
        config = load_config(config_path, overrides)
    elif "config" in checkpoint:
        config = apply_overrides(config_from_dict(checkpoint["config"]), overrides)
    else:
        raise ValueError(f"{path}: checkpoint stores no config; give the config file too")
    check_detection_compatible(checkpoint, config, path)
    if "info" not in checkpoint:
        raise ValueError(f"{path}: checkpoint stores no class names ('info'); it was not written by ccnet train")
    info = info_from_dict(checkpoint["info"])
    model = mask_rcnn_from_config(config, info.num_classes)
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval(), config, info


def evaluate(args: argparse.Namespace, config_path: str | None, overrides: list[str]) -> int:
    """COCOeval (bbox and segm) of a checkpoint on ``data.val_split`` (or ``--split``), or of a
    COCO results JSON (``--predictions``) of any tool."""
    from ccnet.detection.data import CocoInstances
    from ccnet.detection.evaluate import coco_evaluate, evaluate_model, format_metrics
    from ccnet.engine.checkpoint import atomic_write_text
    from ccnet.engine.distributed import cleanup_distributed, init_distributed

    try:
        if args.predictions is not None:
            config = load_config(config_path, overrides)
            if not config.data.root:
                raise ValueError("config key 'data.root' is required to score a results file")
            dataset = CocoInstances.from_root(config.data.root, args.split or config.data.val_split,
                                              max_images=config.data.max_val_samples)
            path = Path(args.predictions)
            try:
                results = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{path}: cannot read a COCO results JSON ({error})") from None
            if not isinstance(results, list):
                raise ValueError(f"{path}: expected a list of COCO results")
            iou_types = ("bbox", "segm") if all("segmentation" in r for r in results) else ("bbox",)
            metrics = coco_evaluate(dataset.coco, results, iou_types=iou_types, image_ids=dataset.image_ids)
            ctx = init_distributed("cpu")
        else:
            model, config, _ = model_from_checkpoint(args.checkpoint, config_path, overrides)
            ctx = init_distributed(config.device)
            dataset = CocoInstances.from_root(config.data.root, args.split or config.data.val_split,
                                              max_images=config.data.max_val_samples)
            metrics, _ = evaluate_model(model.to(ctx.device), dataset, device=ctx.device, progress=ctx.is_main)
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
