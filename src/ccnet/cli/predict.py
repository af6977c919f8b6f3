"""``ccnet predict``: segment images (or videos, with a video model) into label, colour and overlay PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccnet.cli.common import check_output, detection_cli, model_from_checkpoint, task_of
from ccnet.errors import InputError

EPILOG = """examples:
  ccnet predict --checkpoint ck.pt street.png --output out/
  ccnet predict --checkpoint ck.pt "photos/*.jpg" photos2/ --output out/ --batch-size 4
  ccnet predict --checkpoint ck.pt big.png --output out/ eval.mode=slide eval.crop_size=[769,769]
  ccnet predict --checkpoint runs/coco/checkpoints/latest.pt photos/ --output out/   # Mask R-CNN: drawn PNG + JSON
  ccnet predict --checkpoint video_run/checkpoints/latest.pt drive.mp4 --output out/ --mp4   # CCNet3D
  ccnet predict --checkpoint video_run/model frames/0001TP/ video.clip_length=5 --output out/
"""


def run(args: argparse.Namespace) -> int:
    from ccnet.engine.build import infer_kwargs
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs, predict_images
    from ccnet.engine.video import VIDEO_EXTENSIONS, is_video_input, predict_video
    from ccnet.models import CCNet3D

    items = [i for i in args.inputs if "=" in i and not Path(i).exists()]
    inputs = [i for i in args.inputs if i not in items]
    if not inputs:
        raise InputError("no input images given")
    check_output(args.output, "folder")
    if task_of(items, args.checkpoint) == "detection":
        return detection_cli().predict(args, items, inputs)
    model, config, info = model_from_checkpoint(args.checkpoint, items)
    device = resolve_device(args.device or config.device)
    kwargs = dict(info=info, device=device, infer_kwargs=infer_kwargs(config, info), mean=config.data.mean,
                  std=config.data.std, progress=not args.no_progress)
    videos = isinstance(model, CCNet3D) or all(Path(i).suffix.lower() in VIDEO_EXTENSIONS for i in inputs)
    if not videos:
        if args.mp4:
            raise InputError("--mp4 needs a video input (a video file, or a folder of frames with a video model)")
        written = predict_images(model.to(device), collect_inputs(inputs), args.output, batch_size=args.batch_size,
                                 **kwargs)
        print(f"{len(written)} predictions written to {args.output} (<name>.png, <name>_color.png, <name>_overlay.png)")
        return 0
    for item in inputs:
        if not is_video_input(item):
            raise InputError(f"{item}: not a video file ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder of "
                             f"frames; a video model segments videos")
    clip_length = config.video.clip_length
    if not isinstance(model, CCNet3D):  # a 2D model on a video file: frame by frame
        model, clip_length = CCNet3D.from_ccnet(model, temporal=False), 1
    model = model.to(device)
    for item in inputs:
        name = Path(item).stem or Path(item).resolve().name
        out_dir = Path(args.output) if len(inputs) == 1 else Path(args.output) / name
        mp4 = out_dir / f"{name}_overlay.mp4" if args.mp4 else None
        written = predict_video(model, item, out_dir, clip_length=clip_length, mp4=mp4, fps=args.fps, **kwargs)
        frames = f"{len(written)} frame{'' if len(written) == 1 else 's'}"
        how = "frame by frame" if clip_length == 1 else f"in clips of {clip_length} frames"
        print(f"{item}: {frames} written to {out_dir} (<frame>.png, <frame>_color.png, "
              f"<frame>_overlay.png{f'; {mp4.name}' if mp4 else ''}), {how}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="segment images or videos: label PNG, colour mask and overlay per image",
                            description="Segment an image, a folder or a glob; with a video model (CCNet3D) a video "
                                        "file or a folder of frames, in clips of video.clip_length frames. "
                                        "KEY=VALUE overrides (eval.mode=slide, eval.scales=[0.75,1,1.25], "
                                        "eval.flip=true, video.clip_length=5) change the inference.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders or glob patterns; or videos (files or folders of frames)")
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint written by ccnet train")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    parser.add_argument("--mp4", action="store_true", help="videos: also write the overlays as <name>_overlay.mp4")
    parser.add_argument("--fps", type=float, help="frame rate of the MP4 (default: the video's own, else 30)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: the checkpoint config's device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
