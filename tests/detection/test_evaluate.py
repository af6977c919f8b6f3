"""COCO evaluation of known detections: our conversion + COCOeval equals COCOeval called directly."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ccnet.cli import main
from ccnet.detection.data import CocoInstances
from ccnet.detection.evaluate import coco_evaluate, format_metrics, to_coco_results

from .conftest import CATEGORIES


def _known_detections(dataset: CocoInstances, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Mask R-CNN-style outputs near the ground truth: shifted boxes, eroded/dilated masks,
    a wrong class, a false positive on the crowd region, a missed object, random scores."""
    rng = np.random.default_rng(seed)
    outputs = {}
    for index in range(len(dataset)):
        _, target = dataset.load(index)
        boxes, labels, masks = [], [], []
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"], strict=True):
            shift = torch.from_numpy(rng.integers(-3, 4, size=4)).float()
            boxes.append(box + shift)
            labels.append(int(label) if rng.random() > 0.2 else 3 - int(label))
            prob = torch.from_numpy(np.roll(mask.numpy(), int(rng.integers(-2, 3)), axis=1)).float()
            masks.append(prob * float(rng.uniform(0.6, 1.0)))
        if boxes and rng.random() < 0.3:  # a missed object
            boxes, labels, masks = boxes[1:], labels[1:], masks[1:]
        crowd = torch.zeros(64, 64)
        crowd[50:62, 2:20] = 0.9
        boxes.append(torch.tensor([2.0, 50.0, 20.0, 62.0]))  # on the crowd region: ignored by COCOeval
        labels.append(2)
        masks.append(crowd)
        outputs[dataset.image_ids[index]] = {
            "boxes": torch.stack(boxes), "labels": torch.tensor(labels),
            "scores": torch.from_numpy(rng.uniform(0.1, 1.0, size=len(boxes))).float(),
            "masks": torch.stack(masks)[:, None],
        }
    return outputs


def _direct_results(outputs, category_ids) -> list[dict]:
    """The same detections turned into COCO results independently of ccnet."""
    results = []
    for image_id, out in outputs.items():
        for box, label, score, mask in zip(out["boxes"].tolist(), out["labels"].tolist(), out["scores"].tolist(),
                                           out["masks"][:, 0].numpy(), strict=True):
            rle = mask_utils.encode(np.asfortranarray((mask > 0.5).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": image_id, "category_id": category_ids[label - 1], "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "segmentation": rle})
    return results


def _cocoeval(gt: COCO, results: list[dict], iou_type: str) -> list[float]:
    strip = "segmentation" if iou_type == "bbox" else "bbox"
    dt = gt.loadRes([{k: v for k, v in r.items() if k != strip} for r in results])
    evaluator = COCOeval(gt, dt, iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats[:6]]


def test_known_detections_score_as_cocoeval_scores_them(tiny_coco, capsys):
    dataset = CocoInstances.from_root(tiny_coco, "val")
    outputs = _known_detections(dataset)
    ours = [r for image_id, out in outputs.items() for r in to_coco_results(out, image_id, dataset.category_ids)]
    metrics = coco_evaluate(dataset.coco, ours, per_category=True)

    gt = COCO(str(tiny_coco / "annotations" / "instances_val.json"))
    direct = _direct_results(outputs, dataset.category_ids)
    for iou_type in ("bbox", "segm"):
        expected = _cocoeval(gt, direct, iou_type)
        assert list(metrics[iou_type].values()) == expected
        assert 0.05 < expected[0] < 0.95  # neither trivial nor perfect: the test can tell them apart
        # Per category: COCOeval restricted to that category gives the same AP.
        for category in CATEGORIES:
            alone = [r for r in direct if r["category_id"] == category["id"]]
            dt = gt.loadRes([{k: v for k, v in r.items() if k != ("segmentation" if iou_type == "bbox" else "bbox")}
                             for r in alone])
            evaluator = COCOeval(gt, dt, iou_type)
            evaluator.params.catIds = [category["id"]]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            assert metrics[f"{iou_type}_per_category"][category["name"]] == pytest.approx(evaluator.stats[0])
    capsys.readouterr()


def test_perfect_detections_score_one_and_crowd_hits_are_ignored(tiny_coco):
    dataset = CocoInstances.from_root(tiny_coco, "val")
    results = []
    for index, image_id in enumerate(dataset.image_ids):
        _, target = dataset.load(index)
        crowd = torch.zeros(1, 64, 64)
        crowd[0, 50:62, 2:20] = 1
        output = {"boxes": torch.cat([target["boxes"], torch.tensor([[2.0, 50.0, 20.0, 62.0]])]),
                  "labels": torch.cat([target["labels"], torch.tensor([2])]),
                  "scores": torch.tensor([0.9] * len(target["labels"]) + [0.95]),
                  "masks": torch.cat([target["masks"].float(), crowd])[:, None]}
        results += to_coco_results(output, image_id, dataset.category_ids)
    metrics = coco_evaluate(dataset.coco, results)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["APl"] == -1  # no large object: COCOeval's "undefined"
    assert "| bbox | 100.0 | 100.0 | 100.0 |" in format_metrics(metrics)


def test_no_detections_score_zero(tiny_coco):
    dataset = CocoInstances.from_root(tiny_coco, "val")
    metrics = coco_evaluate(dataset.coco, [])
    assert metrics["bbox"]["AP"] == 0 and metrics["segm"]["AP"] == 0
    with pytest.raises(ValueError, match="image ids not in the annotations: \\[999\\]"):
        coco_evaluate(dataset.coco, [{"image_id": 999, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1}])


def test_cli_scores_a_results_file(tiny_coco, tmp_path, capsys):
    dataset = CocoInstances.from_root(tiny_coco, "val")
    outputs = _known_detections(dataset, seed=3)
    results = _direct_results(outputs, dataset.category_ids)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["evaluate", "task=detection", f"data.root={tiny_coco}", "data.val_split=val",
                 "--predictions", str(tmp_path / "results.json"), "--output", str(tmp_path / "m.json")]) == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    gt = COCO(str(tiny_coco / "annotations" / "instances_val.json"))
    assert list(scored["segm"].values()) == _cocoeval(gt, results, "segm")
    assert "| segm |" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["evaluate", "task=detection", f"data.root={tiny_coco}", "data.val_split=val",
                 "--predictions", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: expected a list of COCO results" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(bbox=r["bbox"][:3]), r"result #4 \(image_id \d+\): 'bbox' must be 4 numbers"),
    (lambda r: r.pop("score"), r"result #4 \(image_id \d+\): no 'score'$"),
    (lambda r: r.pop("image_id"), r"result #4: no 'image_id'$"),
    (lambda r: r.update(image_id=999), r"result #4 \(image_id 999\): 'image_id' 999 is not an image"),
    (lambda r: r.update(category_id=5), r"result #4 \(image_id \d+\): 'category_id' 5 is not in"),
    (lambda r: r.update(score="high"), r"result #4 \(image_id \d+\): 'score' must be a number"),
    (lambda r: r.update(segmentation=[[1, 2, 3]]), r"result #4 \(image_id \d+\): 'segmentation' of a result must"),
])
def test_a_bad_results_file_is_refused_in_one_line(tiny_coco, tmp_path, capsys, change, message):
    dataset = CocoInstances.from_root(tiny_coco, "val")
    results = _direct_results(_known_detections(dataset, seed=3), dataset.category_ids)
    change(results[4])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert main(["evaluate", "task=detection", f"data.root={tiny_coco}", "data.val_split=val",
                 "--predictions", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results.json: " in err
    assert re.search(message, err), err
