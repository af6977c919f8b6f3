"""Where a trained model gets the context classes right: one criss-cross hop from the key, or two.

The synthetic scenes put most grey-object pixels on rows *and* columns other than the key's, and
some (the "aligned" object of half the scenes) on the key's rows or columns. A pixel of the
second kind sees the key with one loop of criss-cross attention; a pixel of the first kind needs
two. Scoring the two kinds apart (pixel accuracy on the grey objects, the key itself excluded)
shows which variants read the key from everywhere and which only along its lines, and whether a
variant that does not reach the key at all stays at a guess among three (~33%).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccnet.config import Config
from ccnet.data.synthetic import CONTEXT_CLASSES
from ccnet.files import atomic_write_text

PROBE_NAME = "probe.json"


def key_line_masks(layout: dict[str, Any], label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey-object pixels (the keys excluded) on a key's rows or columns, and off them."""
    grey = np.isin(label, CONTEXT_CLASSES)
    rows = np.zeros(label.shape[0], dtype=bool)
    cols = np.zeros(label.shape[1], dtype=bool)
    for ky, kx, k, *_ in layout.get("keys", [layout["key"]]):  # the two-key task has a list
        grey[ky:ky + k, kx:kx + k] = False
        rows[ky:ky + k] = True
        cols[kx:kx + k] = True
    on_lines = rows[:, None] | cols[None, :]
    return grey & on_lines, grey & ~on_lines


@torch.no_grad()
def probe_run(path: Path, config: Config) -> dict[str, Any]:
    """Grey-object pixel accuracy of the run's final model on its own validation scenes, on the
    key's lines (one hop) and off them (two hops); written to ``path/probe.json``."""
    from ccnet.engine.build import build_val_dataset
    from ccnet.models import CCNet

    model = CCNet.from_pretrained(path / "model").eval()
    dataset = build_val_dataset(config)
    counts = {"one_hop": [0, 0], "two_hops": [0, 0]}
    for index in range(len(dataset)):
        sample = dataset[index]
        prediction = model(sample["image"][None])["out"].argmax(1)[0].numpy()
        label = sample["label"].numpy()
        one, two = key_line_masks(dataset.layout(index), label)
        for name, mask in (("one_hop", one), ("two_hops", two)):
            counts[name][0] += int((prediction[mask] == label[mask]).sum())
            counts[name][1] += int(mask.sum())
    result: dict[str, Any] = {f"{name}_accuracy": hits / total if total else None
                              for name, (hits, total) in counts.items()}
    result.update({f"{name}_pixels": total for name, (_, total) in counts.items()})
    atomic_write_text(path / PROBE_NAME, json.dumps(result, indent=2))
    return result
