"""``ccnet predict``: segment images into label, colour and overlay PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccnet.cli.common import detection_cli, model_from_checkpoint, task_of

EPILOG = """examples:
  ccnet predict --checkpoint ck.pt street.png --output out/
  ccnet predict --checkpoint ck.pt "photos/*.jpg" photos2/ --output out/ --batch-size 4
  ccnet predict --checkpoint ck.pt big.png --output out/ eval.mode=slide eval.crop_size=[769,769]
  ccnet predict --checkpoint runs/coco/checkpoints/latest.pt photos/ --output out/   # Mask R-CNN: drawn PNG + JSON
"""


def run(args: argparse.Namespace) -> int:
    from ccnet.engine.build import infer_kwargs
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs, predict_images

    items = [i for i in args.inputs if "=" in i and not Path(i).exists()]
    inputs = [i for i in args.inputs if i not in items]
    if not inputs:
        raise ValueError("no input images given")
    if task_of(items, args.checkpoint) == "detection":
        return detection_cli().predict(args, items, inputs)
    model, config, info = model_from_checkpoint(args.checkpoint, items)
    device = resolve_device(args.device or config.device)
    paths = collect_inputs(inputs)
    written = predict_images(model.to(device), paths, args.output, info=info, device=device,
                             infer_kwargs=infer_kwargs(config, info), mean=config.data.mean, std=config.data.std,
                             batch_size=args.batch_size, progress=not args.no_progress)
    print(f"{len(written)} predictions written to {args.output} (<name>.png, <name>_color.png, <name>_overlay.png)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="segment images: label PNG, colour mask and overlay per image",
                            description="Segment an image, a folder or a glob; KEY=VALUE overrides (eval.mode=slide, "
                                        "eval.scales=[0.75,1,1.25], eval.flip=true) change the inference.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint written by ccnet train")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: the checkpoint config's device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
