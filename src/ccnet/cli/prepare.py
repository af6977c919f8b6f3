"""``ccnet prepare``: one-off dataset preparation (Cityscapes train ids, VOC aug, the synthetic
COCO instance task)."""

from __future__ import annotations

import argparse

from ccnet.cli.common import check_output
from ccnet.errors import InputError


def run(args: argparse.Namespace) -> int:
    from ccnet.data import prepare

    check_output(args.root, "folder", "ROOT")
    if args.dataset == "synthetic-coco":
        from ccnet.cli.common import detection_cli

        detection_cli()  # a clear error without the [detection] extra
        from ccnet.detection.synthetic import write_synthetic_coco

        counts = write_synthetic_coco(args.root, {"train": args.train_images, "val": args.val_images},
                                      size=(args.size, args.size), seed=args.seed, overwrite=args.overwrite)
        print(f"wrote the synthetic COCO instance task under {args.root}: {args.train_images} training images "
              f"({counts['train']} instances), {args.val_images} validation images ({counts['val']} instances)")
    elif args.dataset == "cityscapes":
        count = prepare.prepare_cityscapes(args.root, overwrite=args.overwrite)
        print(f"wrote {count} *_gtFine_labelTrainIds.png files under {args.root}")
    else:
        if args.sbd_root is None:
            raise InputError("voc-aug needs the SBD root as a second path: ccnet prepare voc-aug VOC_ROOT SBD_ROOT")
        count = prepare.prepare_voc_aug(args.root, args.sbd_root, overwrite=args.overwrite)
        print(f"prepared the VOC aug set under {args.root}: {count} ids in ImageSets/Segmentation/train_aug.txt, "
              f"labels in SegmentationClassAug/")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="one-off dataset preparation (Cityscapes, VOC aug, synthetic COCO)",
                            description="cityscapes ROOT: write *_gtFine_labelTrainIds.png next to every labelIds "
                                        "PNG. voc-aug VOC_ROOT SBD_ROOT: build SegmentationClassAug and train_aug.txt. "
                                        "synthetic-coco DIR: write the long-range-context instance task as a COCO "
                                        "dataset (needs the [detection] extra).")
    parser.add_argument("dataset", choices=["cityscapes", "voc-aug", "synthetic-coco"], help="what to prepare")
    parser.add_argument("root", help="dataset root (Cityscapes root, or the VOC2012 / VOCdevkit folder)")
    parser.add_argument("sbd_root", nargs="?", help="voc-aug only: the SBD root (with dataset/cls/*.mat)")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic-coco: training images")
    parser.add_argument("--val-images", type=int, default=100, help="synthetic-coco: validation images")
    parser.add_argument("--size", type=int, default=128, help="synthetic-coco: image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="synthetic-coco: scene seed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files with other content (refused by default: they may be your own)")
    parser.set_defaults(func=run)
