"""``ccnet bench``: the attention op, the RCCA block and the whole model, measured."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ccnet.cli.common import check_output
from ccnet.errors import InputError


def run(args: argparse.Namespace) -> int:
    """Measure the attention op, the attention block and the whole model; print Markdown tables."""
    from ccnet.bench import attention, report
    from ccnet.bench.model import model_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    for name in args.sizes:
        attention.feature_size(name)  # unknown names fail before anything is measured
    if args.output:
        check_output(args.output, "folder")
    device = _device(args.device)
    parts = {"op", "block", "clip", "model"} if "all" in args.parts else set(args.parts)
    results: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "dtype": args.dtype, **_device_info(device)}
    tables = []
    results["ceiling"] = attention.ceiling(device, dtype)
    print(f"matmul 2048x2048 {args.dtype}: {results['ceiling']['matmul_2048_gflops']:.0f} GFLOP/s")
    if "op" in parts:
        results["op"] = attention.op_benchmark(args.sizes, args.batches, args.channels, args.qk_channels, dtype,
                                               args.layouts, device, args.repeats, memory=not args.no_memory)
        tables.append(report.op_table(results["op"], results["ceiling"]["matmul_2048_gflops"]))
    if "block" in parts:
        results["block"] = attention.block_benchmark(tuple(args.block_size), args.block_channels,
                                                     layouts=args.layouts, device=device,
                                                     repeats=max(1, args.repeats // 2), dtype=dtype)
        tables.append(report.block_table(results["block"]))
        results["block_vs_baselines"] = attention.block_comparison(tuple(args.block_size), args.block_channels,
                                                                   batches=args.batches, dtype=dtype, device=device,
                                                                   repeats=args.repeats)
        tables.append(report.block_comparison_table(results["block_vs_baselines"]))
    if "clip" in parts:
        results["clip"] = attention.clip_benchmark(tuple(args.clip_shape), args.clip_channels, device=device,
                                                   layouts=args.layouts, repeats=max(1, args.repeats // 2))
        tables.append(report.clip_table(results["clip"]))
    if "model" in parts:
        results["model"] = model_benchmark(backbone=args.model_backbone, inference_size=tuple(args.model_size),
                                           train_size=tuple(args.model_train_size), batch=args.model_batch,
                                           layouts=args.layouts, amp=args.amp, device=device,
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


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"--device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available (torch {torch.__version__}, "
                         f"built for CUDA {torch.version.cuda})")
    return device


def _device_info(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on besides the code: the GPU, CUDA and cuDNN versions, TF32 use."""
    if device.type != "cuda":
        return {}
    return {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "tf32_matmul": torch.get_float32_matmul_precision() != "highest",
            "tf32_cudnn": torch.backends.cudnn.allow_tf32}


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmark the attention op, the RCCA block and the whole model",
                           description="Criss-cross attention against the official and mmcv algorithms (time, "
                                       "GFLOP/s, peak memory), RCCA against non-local blocks (FLOPs by "
                                       "FlopCounterMode, memory), our RCCA block (R=2, NCHW) against the same "
                                       "block built on the official and mmcv algorithms, the 3D block against "
                                       "the 2D block on one clip (clip), whole-model speed NCHW vs channels-last. "
                                       "Candidates run round-robin in one process; ratios come from the same run.")
    bench.add_argument("parts", nargs="*", default=["op", "block"], choices=["op", "block", "clip", "model", "all"],
                       help="what to measure (default: op block; clip: 3D vs 2D block on a clip; model takes "
                            "minutes on a CPU)")
    bench.add_argument("--sizes", nargs="+", default=["cityscapes-769", "cityscapes-512x1024", "ade20k-512"],
                       help="op feature sizes: cityscapes-769 (97x97), cityscapes-512x1024 (64x128), ade20k-512 "
                            "(64x64), or HxW")
    bench.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                       help="batch sizes of the op and of the block comparison (default: 1 8)")
    bench.add_argument("--channels", type=int, nargs="+", default=[256, 512], help="value channels (default: 256 512)")
    bench.add_argument("--qk-channels", type=int, default=64, help="query/key channels (default: %(default)s)")
    bench.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"], choices=["nchw", "channels_last"],
                       help="memory layouts of the op inputs, the block and the model (default: both)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="dtype of the op inputs and of the block (default: %(default)s)")
    bench.add_argument("--block-size", type=int, nargs=2, default=[97, 97], metavar=("H", "W"),
                       help="feature size of the block benchmark (default: 97 97)")
    bench.add_argument("--block-channels", type=int, default=512,
                       help="channels of the block benchmark, query/key at 1/8 (default: %(default)s)")
    bench.add_argument("--device", default="cpu",
                       help="cpu or cuda[:N], for every part; on CUDA, times come from CUDA events after warm-up and "
                            "peak memory from the allocator (default: %(default)s)")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    bench.add_argument("--repeats", type=int, default=5, help="timed rounds per candidate (default: %(default)s)")
    bench.add_argument("--no-memory", action="store_true", help="skip the (slow) peak-memory measurements of the op")
    bench.add_argument("--clip-shape", type=int, nargs=3, default=[5, 45, 60], metavar=("T", "H", "W"),
                       help="clip part: frames and feature size (default: 5 45 60, a CamVid clip at stride 8)")
    bench.add_argument("--clip-channels", type=int, default=512, help="clip part: channels (default: %(default)s)")
    bench.add_argument("--model-backbone", default="resnet101", help="backbone of the whole-model benchmark")
    bench.add_argument("--model-batch", type=int, default=1, help="batch of the whole-model benchmark (default: 1)")
    bench.add_argument("--model-size", type=int, nargs=2, default=[769, 769], metavar=("H", "W"),
                       help="inference input size of the whole-model benchmark (default: 769 769)")
    bench.add_argument("--model-train-size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"),
                       help="training-step input size of the whole-model benchmark (default: 512 512)")
    bench.add_argument("--amp", nargs="+", default=["off"], choices=["off", "fp16", "bf16"],
                       help="mixed-precision variants of the whole-model benchmark (default: off)")
    bench.add_argument("--output", metavar="DIR", help="write bench.json, bench.md and bench.png here")
    bench.set_defaults(func=run)
