"""``ccnet train``: train a model (no config: the embedded synthetic default job)."""

from __future__ import annotations

import argparse

from ccnet.cli.common import check_output, config_from_items, detection_cli

EPILOG = """examples:
  ccnet train                                   # the embedded default: synthetic data on the CPU, 3.5-10 min
  ccnet train configs/cityscapes_official.yaml data.root=/data/cityscapes
  ccnet train configs/ade20k_mmseg_r50.yaml optim.iterations=1000 --output runs/ade
  ccnet train configs/cityscapes_official.yaml --output runs/cs --resume auto   # continue a run
  ccnet train configs/cityscapes_official.yaml --output runs/cs --overwrite     # delete that run, start over
  torchrun --nproc_per_node 4 -m ccnet.cli train configs/cityscapes_official.yaml data.root=/data/cityscapes
  ccnet train configs/coco_maskrcnn_r50_rcca.yaml data.root=/data/coco pretrained_backbone=resnet50.pth
"""


def run(args: argparse.Namespace) -> int:
    from ccnet.engine.distributed import cleanup_distributed
    from ccnet.engine.trainer import Trainer

    if args.output is not None:
        check_output(args.output, "folder")
    config = config_from_items(args.config)
    trainer_class = detection_cli().DetectionTrainer if config.task == "detection" else Trainer
    try:
        trainer = trainer_class(config, output_dir=args.output, resume=args.resume, stop_after=args.stop_after,
                                progress=not args.no_progress, overwrite=args.overwrite)
        result = trainer.fit()
    finally:
        cleanup_distributed()
    if trainer.ctx.is_main:
        print(f"run directory: {result.output_dir}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (no config: the built-in synthetic demo job)",
                            description="Train CCNet. Settings: defaults < CONFIG (YAML) < key.sub=value overrides.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="*", metavar="[CONFIG] [KEY=VALUE]",
                        help="a YAML config from configs/ and/or overrides such as optim.lr=0.01 data.root=/data")
    parser.add_argument("--output", metavar="DIR",
                        help="run directory (default: <output_dir>/<name>-<date>-<time>)")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue from a checkpoint, or 'auto' for <output>/checkpoints/latest.pt if present "
                             "(without it, an --output that holds a run is refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="--output holds a run: delete its files (checkpoints, logs, metrics, model), start over")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="stop after iteration N with a checkpoint (split a long run into time-limited jobs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs still written)")
    parser.set_defaults(func=run)
