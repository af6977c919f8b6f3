"""Training, evaluation, inference, prediction, distributed set-up and checkpoints."""

from ccnet.engine.checkpoint import atomic_save, load_checkpoint
from ccnet.engine.distributed import DistContext, init_distributed
from ccnet.engine.evaluate import ShardSampler, evaluate, evaluate_predictions
from ccnet.engine.inference import infer, slide_logits, slide_windows, whole_logits
from ccnet.engine.metrics import ConfusionMatrix, SegmentationMetrics
from ccnet.engine.predict import collect_inputs, predict_images
from ccnet.engine.trainer import Trainer, TrainResult, train

__all__ = [
    "ConfusionMatrix",
    "DistContext",
    "SegmentationMetrics",
    "ShardSampler",
    "TrainResult",
    "Trainer",
    "atomic_save",
    "collect_inputs",
    "evaluate",
    "evaluate_predictions",
    "infer",
    "init_distributed",
    "load_checkpoint",
    "predict_images",
    "slide_logits",
    "slide_windows",
    "train",
    "whole_logits",
]
