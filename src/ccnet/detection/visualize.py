"""Drawing detections (boxes, masks, class names and scores) with torchvision's drawing utilities,
and ``ccnet predict`` for Mask R-CNN: one PNG and one JSON (COCO-style results) per image."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
from tqdm import tqdm

from ccnet.data.info import DatasetInfo
from ccnet.data.io import read_image
from ccnet.files import atomic_write_text

__all__ = ["draw_instances", "predict_images"]


def draw_instances(image: np.ndarray, instances: dict[str, torch.Tensor], info: DatasetInfo, *,
                   score_thresh: float = 0.5, mask_threshold: float = 0.5, alpha: float = 0.45) -> np.ndarray:
    """``image`` (uint8 (H, W, 3) RGB) with the instances whose score reaches ``score_thresh``:
    masks blended in their class colour, boxes, and ``"name score"`` labels. ``instances`` is a
    Mask R-CNN output (``boxes``, ``labels`` 1..K, ``scores``, ``masks`` (N, 1, H, W)) or a target
    (no ``scores``: every instance is drawn, without a score)."""
    canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    scores = instances.get("scores")
    keep = scores >= score_thresh if scores is not None else torch.ones(len(instances["labels"]), dtype=torch.bool)
    if not keep.any():
        return np.ascontiguousarray(image)
    labels = instances["labels"][keep].cpu().tolist()
    colors = [tuple(info.palette[label - 1]) for label in labels]
    if "masks" in instances:
        masks = instances["masks"][keep].cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks).float() > mask_threshold
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    names = [info.class_names[label - 1] for label in labels]
    if scores is not None:
        names = [f"{name} {score:.2f}" for name, score in zip(names, scores[keep].cpu().tolist(), strict=True)]
    canvas = draw_bounding_boxes(canvas, instances["boxes"][keep].cpu(), labels=names, colors=colors, width=2)
    return canvas.permute(1, 2, 0).numpy()


def _json_results(output: dict[str, torch.Tensor], info: DatasetInfo) -> list[dict[str, Any]]:
    from pycocotools import mask as mask_utils

    results = []
    masks = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8) if "masks" in output else None
    for i, (box, label, score) in enumerate(zip(output["boxes"].tolist(), output["labels"].tolist(),
                                                 output["scores"].tolist(), strict=True)):
        result = {"label": info.class_names[label - 1], "score": round(score, 4),
                  "bbox_xyxy": [round(v, 2) for v in box]}
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i]))
            result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        results.append(result)
    return results


@torch.inference_mode()
def predict_images(model: nn.Module, paths: Sequence[str | Path], out_dir: str | Path, *, info: DatasetInfo,
                   device: torch.device | str = "cpu", score_thresh: float = 0.5,
                   progress: bool = True) -> list[Path]:
    """Detect instances in each image; write ``<name>.png`` (the drawing, instances scoring at least
    ``score_thresh``) and ``<name>.json`` (every detection: label, score, box, RLE mask). Returns the
    PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("two input images have the same file name stem; their outputs would collide")
    model.eval()
    written = []
    for path in tqdm(paths, desc="predict", disable=not progress, dynamic_ncols=True):
        image = read_image(path)
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255).to(device)
        output = {k: v.cpu() for k, v in model([tensor])[0].items()}
        png = out_dir / f"{Path(path).stem}.png"
        Image.fromarray(draw_instances(image, output, info, score_thresh=score_thresh)).save(png)
        atomic_write_text(out_dir / f"{Path(path).stem}.json", json.dumps(_json_results(output, info)))
        written.append(png)
    return written
