"""``ccnet convert`` and ``ccnet export``: published weights in, ONNX out."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ccnet.cli.common import check_output, model_from_checkpoint


def run_convert(args: argparse.Namespace) -> int:
    from ccnet.interop import convert

    check_output(args.dst, "folder", "DST")
    destination = convert(args.src, args.dst, format=args.format, num_classes=args.num_classes)
    print(f"wrote {destination} (model.safetensors + config.json); load it with ccnet.load_pretrained")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ccnet.interop import export_onnx
    from ccnet.models.ccnet3d import CCNet3D
    from ccnet.models.hub import is_pretrained_dir, read_pretrained_config

    check_output(args.output, "file", "OUTPUT")
    source, frames = args.model, args.frames
    if is_pretrained_dir(source) and frames is None:  # a video model folder: the clip length it was trained on
        frames = (read_pretrained_config(source).get("inference") or {}).get("clip_length")
    if Path(source).is_file() and source.endswith(".pt"):
        source, config, _ = model_from_checkpoint(source, [])  # a training checkpoint
        if frames is None and isinstance(source, CCNet3D):
            frames = config.video.clip_length
        # Export traces the plain NCHW graph: channels-last weights make torch.export guard on
        # the batch size, which breaks the dynamic batch dimension.
        source = source.to(memory_format=torch.contiguous_format)
    result = export_onnx(source, args.output, opset=args.opset, height=args.size[0], width=args.size[1],
                         check=not args.no_check, normalize=args.normalize, frames=frames)
    print(result.summary())
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser("convert", help="convert official CCNet / mmsegmentation weights to a ccnet model folder",
                          description="Read a published checkpoint (official CCNet .pth, mmsegmentation .pth, a ccnet "
                                      "folder) and write model.safetensors + config.json (class names, palette, "
                                      "normalisation) to DST. See docs/interop.md.")
    conv.add_argument("src", help="the checkpoint file (or state-dict file) to read")
    conv.add_argument("dst", help="the model folder to write (created; an existing ccnet folder is replaced)")
    conv.add_argument("--format", default="auto", help="auto (detect), official, mmseg or ccnet (default: auto)")
    conv.add_argument("--num-classes", type=int, help="expected number of classes (checked against the weights)")
    conv.set_defaults(func=run_convert)

    export = sub.add_parser("export", help="export a model to ONNX (dynamic height/width), checked with onnxruntime",
                            description="Export to ONNX with dynamic batch, height and width (and frames, for a "
                                        "video model), then compare onnxruntime with PyTorch on random inputs of "
                                        "odd and non-square sizes.")
    export.add_argument("model", help="a ccnet model folder, a training checkpoint (.pt) or a published checkpoint")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or newer (default: %(default)s)")
    export.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"),
                        help="example input size used for tracing and checking (default: 512 1024)")
    export.add_argument("--frames", type=int, metavar="T",
                        help="video models (CCNet3D) only: frames of the example clip; T stays dynamic (default: "
                             "the clip length the model was trained with, else 5)")
    export.add_argument("--normalize", action="store_true",
                        help="bake the input normalisation into the graph (the model then takes 0..255 RGB)")
    export.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    export.set_defaults(func=run_export)
