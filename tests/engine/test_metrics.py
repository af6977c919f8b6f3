import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccnet.engine.metrics import ConfusionMatrix, SegmentationMetrics

# A 3-class example written out by hand (the last pixel is ignored):
#   target: 0 0 0 1 1 2 2 2 2 255
#   pred:   0 0 1 1 2 2 2 0 1 0
# confusion (rows gt, cols pred):  [[2, 1, 0], [0, 1, 1], [1, 1, 2]]
# tp = [2, 1, 2], gt = [3, 2, 4], predicted = [3, 3, 3], union = gt + predicted - tp = [4, 4, 5]
TARGET = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 255])
PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 1, 0])
MATRIX = [[2, 1, 0], [0, 1, 1], [1, 1, 2]]
IOU = [2 / 4, 1 / 4, 2 / 5]
ACC = [2 / 3, 1 / 2, 2 / 4]


def _nan_equal(a: list[float], b: list[float]) -> bool:
    pairs = zip(a, b, strict=True)
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y) for x, y in pairs)


def test_hand_computed_matrix_and_scores(device):
    cm = ConfusionMatrix(3, device=device)
    cm.update(PRED.to(device), TARGET.to(device))
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.device.type == torch.device(device).type
    assert cm.matrix.cpu().tolist() == MATRIX
    m = cm.compute()
    assert m.iou == pytest.approx(IOU)
    assert m.accuracy == pytest.approx(ACC)
    assert m.miou == pytest.approx((0.5 + 0.25 + 0.4) / 3)
    assert m.mean_accuracy == pytest.approx((2 / 3 + 0.5 + 0.5) / 3)
    assert m.pixel_accuracy == pytest.approx(5 / 9)


def test_update_accepts_any_shape_and_accumulates():
    cm = ConfusionMatrix(3)
    cm.update(PRED[:6].view(2, 3), TARGET[:6].view(2, 3))
    cm.update(PRED[6:].view(1, 2, 2), TARGET[6:].view(1, 2, 2))
    assert cm.matrix.tolist() == MATRIX
    cm.reset()
    assert cm.matrix.sum() == 0
    with pytest.raises(ValueError, match="shape"):
        cm.update(PRED, TARGET[:-1])


def test_absent_classes_are_nan_and_excluded_from_means():
    # Class 3 appears in neither target nor prediction.
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    m = cm.compute()
    assert math.isnan(m.iou[3]) and math.isnan(m.accuracy[3])
    assert m.miou == pytest.approx(sum(IOU) / 3)
    assert m.mean_accuracy == pytest.approx(sum(ACC) / 3)


def test_class_predicted_but_absent_from_ground_truth_has_zero_iou():
    # target 0 0 1 1, pred 0 2 1 1 -> [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1]))
    m = cm.compute()
    assert m.iou == pytest.approx([1 / 2, 1.0, 0.0])
    assert _nan_equal(m.accuracy, [0.5, 1.0, math.nan])
    assert m.miou == pytest.approx(0.5)
    assert m.mean_accuracy == pytest.approx(0.75)
    assert m.pixel_accuracy == pytest.approx(0.75)


def test_ignored_and_out_of_range_targets_are_skipped():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(torch.tensor([0, 1, 2, 1, 0]), torch.tensor([255, -1, 3, 7, 0]))
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    # A custom ignore index inside the class range drops that class's pixels.
    cm = ConfusionMatrix(3, ignore_index=2)
    cm.update(PRED, TARGET)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_out_of_range_prediction_is_a_miss_of_the_target_class():
    # target 0 0 1, pred 0 255 1: class 0 has one miss (fn) that is nobody's false positive.
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 255, 1]), torch.tensor([0, 0, 1]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]
    assert cm.missed.tolist() == [1, 0]
    m = cm.compute()
    assert m.iou == pytest.approx([0.5, 1.0])
    assert m.accuracy == pytest.approx([0.5, 1.0])
    assert m.pixel_accuracy == pytest.approx(2 / 3)


def test_matches_brute_force_reference():
    gen = torch.Generator().manual_seed(0)
    k = 5
    target = torch.randint(0, k + 1, (2, 17, 13), generator=gen)
    target[target == k] = 255
    pred = torch.randint(0, k, (2, 17, 13), generator=gen)
    cm = ConfusionMatrix(k)
    cm.update(pred, target)
    ref = [[0] * k for _ in range(k)]
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True):
        if t != 255:
            ref[t][p] += 1
    assert cm.matrix.tolist() == ref
    m = cm.compute()
    for c in range(k):
        tp, fn, fp = ref[c][c], sum(ref[c]) - ref[c][c], sum(r[c] for r in ref) - ref[c][c]
        assert m.iou[c] == pytest.approx(tp / (tp + fp + fn))


def test_empty_matrix_gives_nan_everywhere():
    m = ConfusionMatrix(2).compute()
    assert math.isnan(m.miou) and math.isnan(m.pixel_accuracy) and math.isnan(m.mean_accuracy)
    assert m.to_dict() == {
        "miou": None,
        "pixel_accuracy": None,
        "mean_accuracy": None,
        "iou": [None, None],
        "accuracy": [None, None],
    }


def test_to_dict_is_json_serialisable():
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    d = cm.compute().to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["iou"][3] is None
    assert d["iou"][:3] == pytest.approx(IOU)


def test_format_table():
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    table = cm.compute().format_table(["road", "sidewalk", "building", "sky"])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "Acc"]
    assert lines[2].split() == ["road", "50.00", "66.67"]
    assert lines[3].split() == ["sidewalk", "25.00", "50.00"]
    assert lines[4].split() == ["building", "40.00", "50.00"]
    assert lines[5].split() == ["sky", "nan", "nan"]
    assert lines[-1].split() == ["mIoU", "38.33", "aAcc", "55.56", "mAcc", "55.56"]
    with pytest.raises(ValueError, match="class names"):
        cm.compute().format_table(["road"])
    assert "0" in ConfusionMatrix(1).compute().format_table()


def test_all_reduce_without_process_group_is_a_no_op():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert cm.all_reduce() is cm
    assert cm.matrix.tolist() == MATRIX


def test_invalid_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 5, (5, 8, 8), generator=gen)
    target[target == 4] = 255
    return torch.randint(0, 4, (5, 8, 8), generator=gen), target


def _distributed_worker(rank: int, world_size: int, init_file: str, expected: list[list[int]]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        pred, target = _data()
        cm = ConfusionMatrix(4)
        cm.update(pred[rank::world_size], target[rank::world_size])  # each rank its own images
        assert cm.matrix.tolist() != expected
        cm.all_reduce()
        assert cm.matrix.tolist() == expected
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_all_reduce_across_two_processes(tmp_path):
    pred, target = _data()
    single = ConfusionMatrix(4)
    single.update(pred, target)
    # Workers raise (and spawn re-raises here) if the reduced matrix differs from the single-process one.
    mp.spawn(
        _distributed_worker,
        args=(2, str(tmp_path / "store"), single.matrix.tolist()),
        nprocs=2,
        join=True,
    )


def test_metrics_dataclass_fields():
    m = SegmentationMetrics(miou=0.5, pixel_accuracy=0.5, mean_accuracy=0.5, iou=[0.5], accuracy=[0.5])
    assert m.to_dict()["iou"] == [0.5]
