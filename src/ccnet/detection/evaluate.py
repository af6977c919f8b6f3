"""COCO evaluation: the model's detections as COCO results (RLE masks), scored by ``COCOeval``.

As in the reference evaluations (Detectron, torchvision's references), box AP is computed on the
results without their masks and mask AP on the results without their boxes, so a mask's area
(not its box's) decides its small/medium/large range.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccnet.data.io import DatasetError
from ccnet.engine.evaluate import ShardSampler

logger = logging.getLogger(__name__)

__all__ = ["IOU_TYPES", "STAT_NAMES", "coco_evaluate", "evaluate_model", "format_metrics", "load_results",
           "per_category_ap", "to_coco_results"]

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def to_coco_results(output: dict[str, torch.Tensor], image_id: int, category_ids: Sequence[int],
                    mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """One image's Mask R-CNN output (``boxes`` xyxy, ``labels`` 1..K, ``scores``, ``masks``
    (N, 1, H, W) probabilities) as COCO results: ``bbox`` in xywh, ``category_id`` from
    ``category_ids[label - 1]``, ``segmentation`` the mask above ``mask_threshold`` as compressed
    RLE (``counts`` a string, JSON-ready)."""
    boxes = output["boxes"].detach().float().cpu().numpy()
    scores = output["scores"].detach().float().cpu().numpy()
    labels = output["labels"].detach().cpu().numpy()
    rles: list[dict[str, Any]] | None = None
    if "masks" in output:
        masks = (output["masks"].detach()[:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
        for rle in rles:
            rle["counts"] = rle["counts"].decode("ascii")
    results = []
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        result = {"image_id": int(image_id), "category_id": int(category_ids[int(label) - 1]),
                  "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        if rles is not None:
            result["segmentation"] = rles[i]
        results.append(result)
    return results


def load_results(path: str | Path, coco_gt: COCO) -> list[dict[str, Any]]:
    """A COCO results JSON (of any tool), every entry checked against ``coco_gt``'s images and
    categories (:func:`ccnet.detection.validate.check_results`: one line naming the file, the
    entry and the field)."""
    from ccnet.detection.validate import check_results

    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read a COCO results JSON ({error})") from None
    return check_results(path, results, set(coco_gt.getImgIds()), set(coco_gt.getCatIds()))


def _results_coco(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """``coco_gt.loadRes(results)``; an empty result set (which ``loadRes`` rejects) gives an
    empty index, so every ground-truth object counts as missed."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(results)
        empty = COCO()
        empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                         "annotations": []}
        empty.createIndex()
        return empty


def per_category_ap(evaluator: COCOeval) -> dict[str, float]:
    """AP (IoU 0.50:0.95, all areas, 100 detections) of each category of an accumulated
    ``COCOeval``, by category name; -1 for a category without ground truth."""
    precision = evaluator.eval["precision"]  # (IoU thresholds, recall points, categories, areas, max dets)
    names = {c["id"]: c["name"] for c in evaluator.cocoGt.dataset["categories"]}
    result = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        result[names[category_id]] = float(values.mean()) if values.size else -1.0
    return result


def coco_evaluate(coco_gt: COCO, results: Iterable[dict[str, Any]], *, iou_types: Sequence[str] = IOU_TYPES,
                  image_ids: Iterable[int] | None = None,
                  per_category: bool = False) -> dict[str, dict[str, float]]:
    """``COCOeval`` of ``results`` against ``coco_gt``: ``{"bbox": {"AP": ..., "AP50": ..., ...},
    "segm": {...}}`` with COCOeval's own numbers (fractions; -1 where a range has no object).
    ``image_ids`` restricts the evaluation to those images (default: every image of ``coco_gt``).
    ``per_category`` adds ``"bbox_per_category"`` / ``"segm_per_category"``: AP by category name.
    COCOeval's printed summary goes to this module's logger at DEBUG level."""
    results = list(results)
    known = set(coco_gt.getImgIds())
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise ValueError(f"results refer to image ids not in the annotations: {sorted(unknown)[:5]}")
    metrics: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")
        drop = "segmentation" if iou_type == "bbox" else "bbox"
        if iou_type == "segm" and any("segmentation" not in r for r in results):
            raise ValueError("segm evaluation needs a 'segmentation' in every result")
        typed = [{k: v for k, v in r.items() if k != drop} for r in results]
        evaluator = COCOeval(coco_gt, _results_coco(coco_gt, typed), iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        logger.debug(f"{iou_type}:\n{output.getvalue().rstrip()}")
        metrics[iou_type] = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats[:6], strict=True)}
        if per_category:
            metrics[f"{iou_type}_per_category"] = per_category_ap(evaluator)
    return metrics


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A small table in percent (the papers' unit); ``-`` where COCOeval has no value (-1)."""
    lines = ["| " + " | ".join(["type", *STAT_NAMES]) + " |", "|" + "---|" * (len(STAT_NAMES) + 1)]
    for iou_type, values in metrics.items():
        if iou_type not in IOU_TYPES:
            continue
        cells = [f"{100 * values[n]:.1f}" if values[n] >= 0 else "-" for n in STAT_NAMES]
        lines.append("| " + " | ".join([iou_type, *cells]) + " |")
    return "\n".join(lines)


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: Any, *, device: torch.device | str = "cpu", progress: bool = True,
                   num_workers: int = 0) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Run ``model`` (eval mode) over a :class:`CocoInstances` split and score it with COCOeval.

    Under ``torch.distributed`` each rank runs a disjoint shard (:class:`ShardSampler`); rank 0
    gathers the results and evaluates, and every rank returns its metrics. Returns
    ``(metrics, results)`` (the COCO results of all images).
    """
    from ccnet.detection.data import collate

    if isinstance(model, DistributedDataParallel):
        model = model.module
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=1, sampler=ShardSampler(dataset), num_workers=num_workers,
                        collate_fn=collate)
    results: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc="evaluate", disable=not progress, dynamic_ncols=True, leave=False):
        outputs = model([sample["image"].to(device) for sample in batch])
        for sample, output in zip(batch, outputs, strict=True):
            results += to_coco_results(output, sample["image_id"], dataset.category_ids)
    model.train(was_training)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    metrics = [coco_evaluate(dataset.coco, results, image_ids=dataset.image_ids, per_category=True)
               if not distributed or dist.get_rank() == 0 else None]
    if distributed:
        dist.broadcast_object_list(metrics, src=0)
    return metrics[0], results
