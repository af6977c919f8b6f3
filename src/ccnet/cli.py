"""The ``ccnet`` command line: train, evaluate, predict, convert, export, prepare, bench, demo.

User mistakes (missing dataset root, unknown config key, wrong checkpoint for the config, bad
image) end with a one-line error and exit status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

TRAIN_EPILOG = """examples:
  ccnet train                                   # the embedded default: synthetic data on the CPU, ~5 min
  ccnet train configs/cityscapes_official.yaml data.root=/data/cityscapes
  ccnet train configs/ade20k_mmseg_r50.yaml optim.iterations=1000 --output runs/ade
  ccnet train configs/cityscapes_official.yaml --output runs/cs --resume auto   # continue a run
  torchrun --nproc_per_node 4 -m ccnet.cli train configs/cityscapes_official.yaml data.root=/data/cityscapes
"""

EVALUATE_EPILOG = """examples:
  ccnet evaluate --checkpoint runs/x/checkpoints/latest.pt                      # its own config and val set
  ccnet evaluate --checkpoint ck.pt data.root=/data/cityscapes eval.mode=slide eval.crop_size=[769,769]
  ccnet evaluate configs/cityscapes_official.yaml data.root=/data/cityscapes --predictions preds/
"""

PREDICT_EPILOG = """examples:
  ccnet predict --checkpoint ck.pt street.png --output out/
  ccnet predict --checkpoint ck.pt "photos/*.jpg" photos2/ --output out/ --batch-size 4
  ccnet predict --checkpoint ck.pt big.png --output out/ eval.mode=slide eval.crop_size=[769,769]
"""


def _split_config_and_overrides(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first item is the config file unless it has an ``=``."""
    items = list(items)
    config = items.pop(0) if items and "=" not in items[0] else None
    for item in items:
        if "=" not in item:
            raise ValueError(f"{item!r}: the config file must come first; overrides look like key.sub=value")
    return config, items


def _config(items: Sequence[str]):
    from ccnet.config import load_config

    path, overrides = _split_config_and_overrides(items)
    return load_config(path, overrides)


def _model_from_checkpoint(path: str, items: Sequence[str]):
    """Model (eval mode), config and dataset info of a training checkpoint or a ccnet model
    folder (``save_pretrained``, ``ccnet convert``). A config given on the command line must
    describe the same model; overrides apply on top."""
    from ccnet.config import apply_overrides, config_from_dict, load_config
    from ccnet.engine.build import build_model
    from ccnet.engine.checkpoint import load_checkpoint
    from ccnet.engine.trainer import check_compatible, info_from_dict

    if Path(path).is_dir():
        return _model_from_folder(path, items)
    checkpoint = load_checkpoint(path)
    config_path, overrides = _split_config_and_overrides(items)
    if config_path is not None:
        config = load_config(config_path, overrides)
        check_compatible(checkpoint, config, path)
    elif "config" in checkpoint:
        config = apply_overrides(config_from_dict(checkpoint["config"]), overrides)
        check_compatible(checkpoint, config, path)
    else:
        raise ValueError(f"{path}: checkpoint stores no config; give the config file too")
    if "info" not in checkpoint:
        raise ValueError(f"{path}: checkpoint stores no class names ('info'); it was not written by ccnet train")
    info = info_from_dict(checkpoint["info"])
    model = build_model(config, info.num_classes)
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return _for_inference(model, config), config, info


def _for_inference(model: torch.nn.Module, config: Any) -> torch.nn.Module:
    """Eval mode, in the memory format the config asks for (``eval.channels_last``)."""
    if config.eval.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def _model_from_folder(path: str, items: Sequence[str]):
    """A saved ccnet model folder: its own model settings; data and eval settings from the
    command line (defaults otherwise)."""
    from ccnet.data.info import DatasetInfo
    from ccnet.interop import load_pretrained

    model = load_pretrained(path)
    config = _config(items)
    config.model.align_corners = model.align_corners
    if getattr(model, "mean", None) is not None:
        config.data.mean, config.data.std = list(model.mean), list(model.std)
    names = tuple(getattr(model, "class_names", None) or (f"class_{i}" for i in range(model.num_classes)))
    palette = getattr(model, "palette", None) or [((i * 67) % 256, (i * 131) % 256, (i * 199) % 256)
                                                  for i in range(model.num_classes)]
    info = DatasetInfo(Path(path).name, names, tuple(tuple(c) for c in palette))
    return _for_inference(model, config), config, info


# -- subcommands -----------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from ccnet.engine.distributed import cleanup_distributed
    from ccnet.engine.trainer import Trainer

    config = _config(args.config)
    try:
        trainer = Trainer(config, output_dir=args.output, resume=args.resume, stop_after=args.stop_after,
                          progress=not args.no_progress)
        result = trainer.fit()
    finally:
        cleanup_distributed()
    if trainer.ctx.is_main:
        print(f"run directory: {result.output_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ccnet.engine.build import build_val_dataset, infer_kwargs
    from ccnet.engine.distributed import cleanup_distributed, init_distributed
    from ccnet.engine.evaluate import evaluate, evaluate_predictions

    if (args.checkpoint is None) == (args.predictions is None):
        raise ValueError("give exactly one of --checkpoint (score a model) or --predictions (score saved PNGs)")
    try:
        if args.predictions is not None:
            config = _config(args.config)
            dataset = build_val_dataset(config, args.split)
            ctx = init_distributed("cpu")
            confusion = evaluate_predictions(args.predictions, dataset, progress=ctx.is_main)
        else:
            model, config, _ = _model_from_checkpoint(args.checkpoint, args.config)
            ctx = init_distributed(config.device)
            dataset = build_val_dataset(config, args.split)
            confusion = evaluate(model.to(ctx.device), dataset, num_classes=dataset.info.num_classes,
                                 ignore_index=dataset.info.ignore_index, device=ctx.device,
                                 infer_kwargs=infer_kwargs(config, dataset.info), progress=ctx.is_main)
    finally:
        cleanup_distributed()
    metrics = confusion.compute()
    if ctx.is_main:
        print(metrics.format_table(dataset.info.class_names))
        if args.output:
            result = {**metrics.to_dict(), "class_names": list(dataset.info.class_names)}
            from ccnet.engine.checkpoint import atomic_write_text

            atomic_write_text(args.output, json.dumps(result, indent=2))
            print(f"metrics written to {args.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ccnet.engine.build import infer_kwargs
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs, predict_images

    items = [i for i in args.inputs if "=" in i and not Path(i).exists()]
    inputs = [i for i in args.inputs if i not in items]
    if not inputs:
        raise ValueError("no input images given")
    model, config, info = _model_from_checkpoint(args.checkpoint, items)
    device = resolve_device(args.device or config.device)
    paths = collect_inputs(inputs)
    written = predict_images(model.to(device), paths, args.output, info=info, device=device,
                             infer_kwargs=infer_kwargs(config, info), mean=config.data.mean, std=config.data.std,
                             batch_size=args.batch_size, progress=not args.no_progress)
    print(f"{len(written)} predictions written to {args.output} (<name>.png, <name>_color.png, <name>_overlay.png)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ccnet.interop import convert

    destination = convert(args.src, args.dst, format=args.format, num_classes=args.num_classes)
    print(f"wrote {destination} (model.safetensors + config.json); load it with ccnet.load_pretrained")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ccnet.interop import export_onnx

    source = args.model
    if Path(source).is_file() and source.endswith(".pt"):
        source, _, _ = _model_from_checkpoint(source, [])  # a training checkpoint
        # Export traces the plain NCHW graph: channels-last weights make torch.export guard on
        # the batch size, which breaks the dynamic batch dimension.
        source = source.to(memory_format=torch.contiguous_format)
    result = export_onnx(source, args.output, opset=args.opset, height=args.size[0], width=args.size[1],
                         check=not args.no_check, normalize=args.normalize)
    print(f"wrote {args.output}: {result}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
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


def _demo(args: argparse.Namespace) -> int:
    """A few SGD steps of a CCNet on random data: forward, all losses, backward, eval forward."""
    from ccnet.losses import SegmentationCriterion
    from ccnet.models import create_model

    torch.manual_seed(args.seed)
    overrides: dict[str, Any] = {"consistency": True}
    if args.backbone:
        overrides["backbone"] = args.backbone
    model = create_model(args.preset, args.classes, **overrides)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.preset} ({model.config['backbone']}, R={model.recurrence}), {params / 1e6:.1f}M parameters")
    criterion = SegmentationCriterion(ohem=True, ohem_min_kept=args.size[0] * args.size[1] // 4, consistency=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(args.batch, 3, *args.size)
    target = torch.randint(0, args.classes, (args.batch, *args.size))
    model.train()
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        outputs = model(images)
        loss, logs = criterion(outputs, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        terms = ", ".join(f"{k}={v.item():.4f}" for k, v in logs.items())
        print(f"step {step}/{args.steps}: {terms}  ({time.perf_counter() - start:.2f}s)")
    print("training outputs: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in outputs.items()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Measure the attention op, the attention block and the whole model; print Markdown tables."""
    from ccnet.bench import attention, report
    from ccnet.bench.model import model_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    for name in args.sizes:
        if name not in attention.FEATURE_SIZES:
            raise ValueError(f"unknown feature size {name!r}; choose from {', '.join(attention.FEATURE_SIZES)}")
    parts = {"op", "block", "model"} if "all" in args.parts else set(args.parts)
    results: dict[str, Any] = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "dtype": args.dtype}
    tables = []
    results["ceiling"] = attention.ceiling(args.device, dtype)
    print(f"matmul 2048x2048 {args.dtype}: {results['ceiling']['matmul_2048_gflops']:.0f} GFLOP/s")
    if "op" in parts:
        results["op"] = attention.op_benchmark(args.sizes, args.batches, args.channels, args.qk_channels, dtype,
                                               args.layouts, args.device, args.repeats, memory=not args.no_memory)
        tables.append(report.op_table(results["op"], results["ceiling"]["matmul_2048_gflops"]))
    if "block" in parts:
        results["block"] = attention.block_benchmark(device=args.device, repeats=max(1, args.repeats // 2))
        tables.append(report.block_table(results["block"]))
    if "model" in parts:
        results["model"] = model_benchmark(backbone=args.model_backbone, device=args.device,
                                           repeats=max(1, args.repeats // 2))
        tables.append(report.model_table(results["model"]))
    print("\n\n".join(tables))
    if args.output:
        out = Path(args.output)
        report.write_json(results, out / "bench.json")
        (out / "bench.md").write_text("\n\n".join(tables) + "\n")
        written = [out / "bench.json", out / "bench.md"]
        if "op" in results or "block" in results:
            report.plot(results, out / "bench.png")
            written.append(out / "bench.png")
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ccnet.models import PRESETS

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="ccnet", description="CCNet: criss-cross attention for segmentation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model (no config: the built-in synthetic demo job)",
                           description="Train CCNet. Settings: defaults < CONFIG (YAML) < key.sub=value overrides.",
                           epilog=TRAIN_EPILOG, formatter_class=formatter)
    train.add_argument("config", nargs="*", metavar="[CONFIG] [KEY=VALUE]",
                       help="a YAML config from configs/ and/or overrides such as optim.lr=0.01 data.root=/data")
    train.add_argument("--output", metavar="DIR",
                       help="run directory (default: <output_dir>/<name>-<date>-<time>)")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from a checkpoint, or 'auto' for <output>/checkpoints/latest.pt if present")
    train.add_argument("--stop-after", type=int, metavar="N",
                       help="stop after iteration N with a checkpoint (split a long run into time-limited jobs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs still written)")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="score a checkpoint, or saved prediction PNGs, on a dataset",
                              description="Per-class IoU/accuracy, mIoU, aAcc, mAcc on a validation split.",
                              epilog=EVALUATE_EPILOG, formatter_class=formatter)
    evaluate.add_argument("config", nargs="*", metavar="[CONFIG] [KEY=VALUE]",
                          help="config and overrides (with --checkpoint, the checkpoint's own config is the default; "
                               "eval.* keys choose whole/slide, scales and flip)")
    evaluate.add_argument("--checkpoint", metavar="PATH", help="a checkpoint written by ccnet train")
    evaluate.add_argument("--predictions", metavar="DIR",
                          help="score <name>.png label images of train ids (what ccnet predict writes) instead")
    evaluate.add_argument("--split", help="dataset split to score (default: data.val_split)")
    evaluate.add_argument("--output", metavar="FILE", help="also write the metrics as JSON")
    evaluate.set_defaults(func=_evaluate)

    predict = sub.add_parser("predict", help="segment images: label PNG, colour mask and overlay per image",
                             description="Segment an image, a folder or a glob; KEY=VALUE overrides (eval.mode=slide, "
                                         "eval.scales=[0.75,1,1.25], eval.flip=true) change the inference.",
                             epilog=PREDICT_EPILOG, formatter_class=formatter)
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    predict.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint written by ccnet train")
    predict.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs (created)")
    predict.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    predict.add_argument("--device", help="cpu, cuda, cuda:N (default: the checkpoint config's device)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(func=_predict)

    prep = sub.add_parser("prepare", help="one-off dataset preparation (Cityscapes train ids, VOC aug)",
                          description="cityscapes ROOT: write *_gtFine_labelTrainIds.png next to every labelIds PNG. "
                                      "voc-aug VOC_ROOT SBD_ROOT: build SegmentationClassAug and train_aug.txt.")
    prep.add_argument("dataset", choices=["cityscapes", "voc-aug"], help="what to prepare")
    prep.add_argument("root", help="dataset root (Cityscapes root, or the VOC2012 / VOCdevkit folder)")
    prep.add_argument("sbd_root", nargs="?", help="voc-aug only: the SBD root (with dataset/cls/*.mat)")
    prep.set_defaults(func=_prepare)

    conv = sub.add_parser("convert", help="convert official CCNet / mmsegmentation weights to a ccnet model folder",
                          description="Read a published checkpoint (official CCNet .pth, mmsegmentation .pth, a ccnet "
                                      "folder) and write model.safetensors + config.json (class names, palette, "
                                      "normalisation) to DST. See docs/interop.md.")
    conv.add_argument("src", help="the checkpoint file (or state-dict file) to read")
    conv.add_argument("dst", help="the model folder to write (created; an existing ccnet folder is replaced)")
    conv.add_argument("--format", default="auto", help="auto (detect), official, mmseg or ccnet (default: auto)")
    conv.add_argument("--num-classes", type=int, help="expected number of classes (checked against the weights)")
    conv.set_defaults(func=_convert)

    export = sub.add_parser("export", help="export a model to ONNX (dynamic height/width), checked with onnxruntime",
                            description="Export to ONNX with dynamic batch, height and width, then compare "
                                        "onnxruntime with PyTorch on random inputs of odd and non-square sizes.")
    export.add_argument("model", help="a ccnet model folder, a training checkpoint (.pt) or a published checkpoint")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or newer (default: %(default)s)")
    export.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"),
                        help="example input size used for tracing and checking (default: 512 1024)")
    export.add_argument("--normalize", action="store_true",
                        help="bake the input normalisation into the graph (the model then takes 0..255 RGB)")
    export.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    export.set_defaults(func=_export)

    bench = sub.add_parser("bench", help="benchmark the attention op, the RCCA block and the whole model",
                           description="Criss-cross attention against the official and mmcv algorithms (time, "
                                       "GFLOP/s, peak memory), RCCA against non-local blocks (FLOPs by "
                                       "FlopCounterMode, memory), whole-model speed NCHW vs channels-last. "
                                       "Candidates run round-robin in one process; ratios come from the same run.")
    bench.add_argument("parts", nargs="*", default=["op", "block"], choices=["op", "block", "model", "all"],
                       help="what to measure (default: op block; model takes minutes on a CPU)")
    bench.add_argument("--sizes", nargs="+", default=["cityscapes-769", "cityscapes-512x1024", "ade20k-512"],
                       help="feature sizes: cityscapes-769 (97x97), cityscapes-512x1024 (64x128), ade20k-512 (64x64)")
    bench.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    bench.add_argument("--channels", type=int, nargs="+", default=[256, 512], help="value channels (default: 256 512)")
    bench.add_argument("--qk-channels", type=int, default=64, help="query/key channels (default: %(default)s)")
    bench.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"], choices=["nchw", "channels_last"],
                       help="memory layout of the op inputs (default: both)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="op input dtype (default: %(default)s)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    bench.add_argument("--repeats", type=int, default=5, help="timed rounds per candidate (default: %(default)s)")
    bench.add_argument("--no-memory", action="store_true", help="skip the (slow) peak-memory measurements of the op")
    bench.add_argument("--model-backbone", default="resnet101", help="backbone of the whole-model benchmark")
    bench.add_argument("--output", metavar="DIR", help="write bench.json, bench.md and bench.png here")
    bench.set_defaults(func=_bench)

    demo = sub.add_parser("demo", help="a few training steps of a full-size CCNet on random data",
                          description=_demo.__doc__)
    demo.add_argument("--preset", default="ccnet_official_cityscapes", choices=sorted(PRESETS),
                      help="named model configuration (default: %(default)s)")
    demo.add_argument("--backbone", help="override the preset's backbone: resnet18 ... resnet152")
    demo.add_argument("--classes", type=int, default=19, help="number of classes (default: %(default)s)")
    demo.add_argument("--size", type=int, nargs=2, default=(97, 129), metavar=("H", "W"),
                      help="input height and width (default: 97 129)")
    demo.add_argument("--batch", type=int, default=2, help="batch size (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=3, help="SGD steps (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def _one_line(error: BaseException) -> str:
    """The message of an error, even one re-raised by a DataLoader worker with a traceback inside."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    last = lines[-1]
    if len(lines) > 1 and ": " in last and last.split(": ", 1)[0].replace(".", "").isidentifier():
        last = last.split(": ", 1)[1]  # "ccnet.data.io.DatasetError: msg" -> "msg"
    return last


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, FloatingPointError, KeyError) as error:
        print(f"ccnet {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ccnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
