"""The model card (``README.md``) of a ccnet model on the Hugging Face Hub.

A YAML metadata block the Hub reads (``library_name``, ``tags``, ``datasets``, ``metrics`` and,
with a dataset and measured metrics, a ``model-index`` of results), then the classes, the
run's scores, how to load the model and its ``config.json``. Pure text: nothing here talks to
the Hub.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["CARD_NAME", "LIBRARY_NAME", "card_metadata", "model_card"]

CARD_NAME = "README.md"
LIBRARY_NAME = "ccnet-pytorch"

# metrics.json key -> (Hub metric id, shown name)
_SCORES = {
    "miou": ("mean_iou", "mIoU"),
    "pixel_accuracy": ("accuracy", "aAcc (pixel accuracy)"),
    "mean_accuracy": ("mean_accuracy", "mAcc (mean class accuracy)"),
}


def _scores(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The summary scores of a ``metrics.json`` that are numbers, by its keys."""
    if not metrics:
        return {}
    return {key: float(metrics[key]) for key in _SCORES
            if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool)}


def card_metadata(document: Mapping[str, Any], repo_id: str,
                  metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Hub metadata of a model whose ``config.json`` is ``document``."""
    architecture = document.get("architecture", "CCNet")
    dataset = (document.get("inference") or {}).get("dataset")
    tags = ["ccnet", "criss-cross-attention", "semantic-segmentation", "image-segmentation", "pytorch",
            "safetensors"]
    if architecture == "CCNet3D":
        tags.append("video-segmentation")
    meta: dict[str, Any] = {"library_name": LIBRARY_NAME, "pipeline_tag": "image-segmentation", "tags": tags}
    if dataset:
        meta["datasets"] = [str(dataset)]
    scores = _scores(metrics)
    if scores:
        meta["metrics"] = [_SCORES[key][0] for key in scores]
        if dataset:
            meta["model-index"] = [{
                "name": repo_id.split("/")[-1],
                "results": [{
                    "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                    "dataset": {"name": str(dataset), "type": str(dataset)},
                    "metrics": [{"type": _SCORES[key][0], "name": _SCORES[key][1], "value": round(value * 100, 2)}
                                for key, value in scores.items()],
                }],
            }]
    return meta


def _percent(value: Any) -> str:
    return f"{value * 100:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def model_card(document: Mapping[str, Any], repo_id: str, metrics: Mapping[str, Any] | None = None) -> str:
    """The ``README.md`` text for the model whose ``config.json`` is ``document``; ``metrics`` is
    the run's ``metrics.json`` (``miou``, ``pixel_accuracy``, ``mean_accuracy``, per-class ``iou``)."""
    architecture = document.get("architecture", "CCNet")
    config = document["model"]
    id2label = document.get("id2label") or {}
    names = [id2label.get(str(i), str(i)) for i in range(int(config["num_classes"]))]
    dataset = (document.get("inference") or {}).get("dataset")
    front = yaml.safe_dump(card_metadata(document, repo_id, metrics), sort_keys=False, allow_unicode=True)
    kind = "video (clip) segmentation" if architecture == "CCNet3D" else "semantic segmentation"
    lines = [
        "---", front.rstrip("\n"), "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"A {architecture} model (criss-cross attention) for {kind}: backbone "
        f"{config.get('backbone', 'resnet101')}, {len(names)} classes"
        + (f", trained on {dataset}" if dataset else "") + f", in the format of {LIBRARY_NAME} "
        f"(`model.safetensors` + `config.json`).", "",
    ]
    scores = _scores(metrics)
    if scores:
        summary = ", ".join(f"{_SCORES[key][1]} {value * 100:.2f}" for key, value in scores.items())
        iteration = metrics.get("iteration") if metrics else None
        lines += ["## Results", "", "On the validation set" + (f" after {iteration} iterations" if iteration
                                                                 else "") + f": {summary} (percent).", ""]
    per_class = list(metrics.get("iou") or []) if metrics else []
    lines += ["## Classes", "", "| id | class |" + (" IoU |" if len(per_class) == len(names) else ""),
              "|---:|---|" + ("---:|" if len(per_class) == len(names) else "")]
    for i, name in enumerate(names):
        lines.append(f"| {i} | {name} |" + (f" {_percent(per_class[i])} |" if len(per_class) == len(names) else ""))
    loader = "CCNet3D" if architecture == "CCNet3D" else "CCNet"
    lines += [
        "", "## How to load", "", "```bash", f"pip install '{LIBRARY_NAME}[hub]'", "```", "",
        "```python", "import ccnet", "",
        f'model = ccnet.{loader}.from_pretrained("{repo_id}")  # or ccnet.load_pretrained("{repo_id}")',
        "```", "",
        "## Config", "", "```json", json.dumps(dict(document), indent=2), "```", "",
    ]
    return "\n".join(lines)
