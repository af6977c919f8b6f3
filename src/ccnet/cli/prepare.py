"""``ccnet prepare``: one-off dataset preparation (Cityscapes train ids, VOC aug)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ccnet.data import prepare

    if args.dataset == "cityscapes":
        count = prepare.prepare_cityscapes(args.root)
        print(f"wrote {count} *_gtFine_labelTrainIds.png files under {args.root}")
    else:
        if args.sbd_root is None:
            raise ValueError("voc-aug needs the SBD root as a second path: ccnet prepare voc-aug VOC_ROOT SBD_ROOT")
        result = prepare.prepare_voc_aug(args.root, args.sbd_root)
        print(f"prepared the VOC aug set under {args.root}: {result}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="one-off dataset preparation (Cityscapes train ids, VOC aug)",
                            description="cityscapes ROOT: write *_gtFine_labelTrainIds.png next to every labelIds "
                                        "PNG. voc-aug VOC_ROOT SBD_ROOT: build SegmentationClassAug and train_aug.txt.")
    parser.add_argument("dataset", choices=["cityscapes", "voc-aug"], help="what to prepare")
    parser.add_argument("root", help="dataset root (Cityscapes root, or the VOC2012 / VOCdevkit folder)")
    parser.add_argument("sbd_root", nargs="?", help="voc-aug only: the SBD root (with dataset/cls/*.mat)")
    parser.set_defaults(func=run)
