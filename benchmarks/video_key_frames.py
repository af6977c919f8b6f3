"""Where a synthetic-video model gets its context classes right: the key frame against the others.

    .venv/bin/python benchmarks/video_key_frames.py runs/synthetic_video-*/

For each finished run of ``configs/synthetic_video.yaml`` (its ``config.yaml`` and ``model/``),
segments the run's validation clips and prints the pixel accuracy on the three grey context
classes, separately in the frame that shows the key band and in the other frames, next to the
run's mIoU. A model that attends within each frame can only be right in the key frame (about
1/3 elsewhere, a guess); one that attends across the clip can be right in every frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ccnet.config import load_config
from ccnet.data.synthetic import CONTEXT_CLASSES
from ccnet.engine.build import build_val_dataset
from ccnet.engine.inference import infer
from ccnet.models import CCNet3D


def key_frame_accuracy(run: Path) -> dict[str, float]:
    config = load_config(run / "config.yaml")
    if config.data.dataset != "synthetic_video":
        raise ValueError(f"{run}: not a synthetic_video run")
    model = CCNet3D.from_pretrained(run / "model")
    model.temporal = config.video.attention == "3d"
    dataset = build_val_dataset(config)
    hits = {"key": [0, 0], "other": [0, 0]}
    for index in range(len(dataset)):
        item = dataset[index]
        pred = infer(model, item["image"][None], num_classes=model.num_classes).argmax(1)[0].numpy()
        label = item["label"].numpy()
        key = dataset.key_frame(index)
        for t in range(label.shape[0]):
            grey = np.isin(label[t], CONTEXT_CLASSES)
            counts = hits["key" if t == key else "other"]
            counts[0] += int((pred[t][grey] == label[t][grey]).sum())
            counts[1] += int(grey.sum())
    metrics = json.loads((run / "metrics.json").read_text())
    return {"miou": metrics["miou"], **{f"{k}_frame_context_accuracy": a / max(n, 1) for k, (a, n) in hits.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished synthetic_video run folders")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        result = key_frame_accuracy(run)
        print(f"{run}: mIoU {100 * result['miou']:.1f}, context-class pixel accuracy in the key frame "
              f"{100 * result['key_frame_context_accuracy']:.1f}, in the other frames "
              f"{100 * result['other_frame_context_accuracy']:.1f}")


if __name__ == "__main__":
    main()
