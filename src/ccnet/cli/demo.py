"""``ccnet demo``: a few training steps of a full-size CCNet on random data."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch


def run(args: argparse.Namespace) -> int:
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



def add_parser(sub: argparse._SubParsersAction) -> None:
    from ccnet.models import PRESETS

    demo = sub.add_parser("demo", help="a few training steps of a full-size CCNet on random data",
                          description=run.__doc__)
    demo.add_argument("--preset", default="ccnet_official_cityscapes", choices=sorted(PRESETS),
                      help="named model configuration (default: %(default)s)")
    demo.add_argument("--backbone", help="override the preset's backbone: resnet18 ... resnet152")
    demo.add_argument("--classes", type=int, default=19, help="number of classes (default: %(default)s)")
    demo.add_argument("--size", type=int, nargs=2, default=(97, 129), metavar=("H", "W"),
                      help="input height and width (default: 97 129)")
    demo.add_argument("--batch", type=int, default=2, help="batch size (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=3, help="SGD steps (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=run)
