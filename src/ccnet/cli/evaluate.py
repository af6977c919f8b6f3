"""``ccnet evaluate``: score a checkpoint, or saved prediction PNGs, on a dataset."""

from __future__ import annotations

import argparse
import json

from ccnet.cli.common import (
    check_output,
    config_from_items,
    detection_cli,
    model_from_checkpoint,
    split_config_and_overrides,
    task_of,
)
from ccnet.errors import InputError

EPILOG = """examples:
  ccnet evaluate --checkpoint runs/x/checkpoints/latest.pt                      # its own config and val set
  ccnet evaluate --checkpoint ck.pt data.root=/data/cityscapes eval.mode=slide eval.crop_size=[769,769]
  ccnet evaluate configs/cityscapes_official.yaml data.root=/data/cityscapes --predictions preds/
  ccnet evaluate --checkpoint runs/coco/checkpoints/latest.pt                   # Mask R-CNN: COCOeval bbox + segm
  ccnet evaluate configs/coco_maskrcnn_r50_rcca.yaml data.root=/data/coco --predictions results.json
  ccnet evaluate --checkpoint runs/video/checkpoints/latest.pt video.attention=2d   # CCNet3D run per frame
"""


def _note_synthetic_training_scenes(config, split: str | None) -> None:
    """Say which scenes are scored when a synthetic dataset's training split is evaluated."""
    from ccnet.engine.build import SYNTHETIC_DATASETS

    if config.data.dataset in SYNTHETIC_DATASETS and split == config.data.train_split:
        print(f"note: scoring the first {config.data.synthetic_val_samples} scenes of the {config.data.dataset} "
              f"training split (data.synthetic_val_samples; its 100,000 are what training samples from)")


def run(args: argparse.Namespace) -> int:
    from ccnet.engine.build import build_val_dataset, infer_kwargs
    from ccnet.engine.distributed import cleanup_distributed, init_distributed
    from ccnet.engine.evaluate import evaluate, evaluate_predictions
    from ccnet.engine.trainer import check_same_classes
    from ccnet.models import CCNet3D

    if (args.checkpoint is None) == (args.predictions is None):
        raise InputError("give exactly one of --checkpoint (score a model) or --predictions (score saved PNGs)")
    if args.output:
        check_output(args.output, "file")
    if task_of(args.config, args.checkpoint) == "detection":
        return detection_cli().evaluate(args, *split_config_and_overrides(args.config))
    try:
        if args.predictions is not None:
            config = config_from_items(args.config)
            dataset = build_val_dataset(config, args.split)
            ctx = init_distributed("cpu")
            frames = getattr(dataset, "frame_dataset", dataset)  # clips: their annotated frames, each once
            confusion = evaluate_predictions(args.predictions, frames, progress=ctx.is_main and not args.no_progress)
        else:
            model, config, model_info = model_from_checkpoint(args.checkpoint, args.config)
            if isinstance(model, CCNet3D) and not config.is_video:
                raise InputError(f"{args.checkpoint}: a video model (CCNet3D) is scored on clips; give a video "
                                 f"dataset (data.dataset=camvid_video or synthetic_video)")
            ctx = init_distributed(config.device)
            dataset = build_val_dataset(config, args.split)
            check_same_classes(model_info, dataset.info, args.checkpoint)
            if ctx.is_main:
                _note_synthetic_training_scenes(config, args.split)
            confusion = evaluate(model.to(ctx.device), dataset, num_classes=dataset.info.num_classes,
                                 ignore_index=dataset.info.ignore_index, device=ctx.device,
                                 infer_kwargs=infer_kwargs(config, dataset.info),
                                 progress=ctx.is_main and not args.no_progress)
    finally:
        cleanup_distributed()
    metrics = confusion.compute()
    if ctx.is_main:
        print(metrics.format_table(dataset.info.class_names))
        if args.output:
            result = {**metrics.to_dict(), "class_names": list(dataset.info.class_names)}
            from ccnet.files import atomic_write_text

            atomic_write_text(args.output, json.dumps(result, indent=2))
            print(f"metrics written to {args.output}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score a checkpoint, or saved prediction PNGs, on a dataset",
                            description="Per-class IoU/accuracy, mIoU, aAcc, mAcc on a validation split.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="*", metavar="[CONFIG] [KEY=VALUE]",
                        help="config and overrides (with --checkpoint, the checkpoint's own config is the default; "
                             "eval.* keys choose whole/slide, scales and flip)")
    parser.add_argument("--checkpoint", metavar="PATH", help="a checkpoint written by ccnet train")
    parser.add_argument("--predictions", metavar="DIR",
                        help="score <name>.png label images of train ids (what ccnet predict writes) instead; "
                             "for task detection, a COCO results JSON")
    parser.add_argument("--split", help="dataset split to score (default: data.val_split)")
    parser.add_argument("--output", metavar="FILE", help="also write the metrics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
