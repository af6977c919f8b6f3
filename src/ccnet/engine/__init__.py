"""Training, evaluation, inference, prediction, distributed set-up and checkpoints.

Names are imported from their modules on first access (PEP 562), so that a tool needing one
piece (a checkpoint reader, the metrics) does not load the data and augmentation stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_checkpoint": "ccnet.engine.checkpoint",
    "DistContext": "ccnet.engine.distributed",
    "init_distributed": "ccnet.engine.distributed",
    "ShardSampler": "ccnet.engine.evaluate",
    "evaluate": "ccnet.engine.evaluate",
    "evaluate_predictions": "ccnet.engine.evaluate",
    "infer": "ccnet.engine.inference",
    "slide_logits": "ccnet.engine.inference",
    "slide_windows": "ccnet.engine.inference",
    "whole_logits": "ccnet.engine.inference",
    "ConfusionMatrix": "ccnet.engine.metrics",
    "SegmentationMetrics": "ccnet.engine.metrics",
    "collect_inputs": "ccnet.engine.predict",
    "predict_video": "ccnet.engine.video",
    "predict_images": "ccnet.engine.predict",
    "Trainer": "ccnet.engine.trainer",
    "TrainResult": "ccnet.engine.trainer",
    "train": "ccnet.engine.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ccnet.engine' has no attribute {name!r}")


__all__ = sorted(_LAZY)
