"""``ccnet visualize-attention``: where the attention of chosen pixels looks, after each loop."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccnet.cli.common import check_output, model_from_checkpoint

EPILOG = """examples:
  ccnet visualize-attention runs/default/checkpoints/latest.pt scene.png --pixel 150,40 --output attention/
  ccnet visualize-attention runs/default/model scene.png --pixel 150,40 --pixel 20,170 --output attention/

writes <image>_attention.png (one row per pixel: the image with the pixel marked, its attention
after loop 1 and composed through each further loop, the prediction; a legend of the predicted
classes), <image>_pixel<k>.png (row k alone) and <image>_attention.npz (the maps at feature
resolution: loops and crosses (P, R, h, w), pixels, positions).
"""


def parse_pixel(text: str) -> tuple[int, int]:
    """``"y,x"`` -> ``(y, x)``."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected y,x (two integers, row then column)")
    return int(parts[0]), int(parts[1])


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ccnet.data.io import read_image
    from ccnet.data.transforms import to_tensors
    from ccnet.engine.distributed import resolve_device
    from ccnet.models import CCNet3D
    from ccnet.viz import attention_maps
    from ccnet.viz.figure import attention_figure, attention_row

    check_output(args.output, "folder")
    model, config, info = model_from_checkpoint(args.checkpoint, args.overrides)
    if isinstance(model, CCNet3D):  # one image is a clip of one frame, on which CCNet3D is its 2D model exactly
        model = model.to_ccnet()
    device = resolve_device(args.device or config.device)
    image = read_image(args.image)
    x, _ = to_tensors(image, np.zeros(image.shape[:2], np.uint8), config.data.mean, config.data.std)
    maps = attention_maps(model.to(device), x.to(device), args.pixel)
    align_corners = bool(getattr(model, "align_corners", False))

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    Image.fromarray(attention_figure(image, maps, info, align_corners=align_corners)).save(
        out_dir / f"{stem}_attention.png")
    for k in range(len(maps.pixels)):
        row = attention_row(image, maps, k, info, align_corners=align_corners)
        Image.fromarray(row).save(out_dir / f"{stem}_pixel{k}.png")
    np.savez_compressed(out_dir / f"{stem}_attention.npz", loops=maps.loops.cpu().numpy(),
                        crosses=maps.crosses.cpu().numpy(), pixels=np.array(maps.pixels),
                        positions=np.array(maps.positions))
    print(f"{len(maps.pixels)} pixel(s), R={maps.recurrence}, features {maps.feature_size[0]}x{maps.feature_size[1]}: "
          f"{out_dir / (stem + '_attention.png')}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "visualize-attention", help="figures of where chosen pixels' attention looks after each loop",
        description="Draw the criss-cross attention of chosen pixels after each loop (loop 1: the pixel's row and "
                    "column; loop 2 composed with loop 1: the whole image) next to the prediction. KEY=VALUE "
                    "overrides apply to the checkpoint's config.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint written by ccnet train, or a model folder (save_pretrained, ccnet convert)")
    parser.add_argument("image", metavar="IMAGE", help="the image to look at")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--pixel", type=parse_pixel, action="append", required=True, metavar="Y,X",
                        help="a pixel (row,column in the image); repeat for several")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the figures (created)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: the checkpoint config's device)")
    parser.set_defaults(func=run)
