import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ccnet.data import DatasetInfo
from ccnet.data.base import Sample
from ccnet.engine.evaluate import ShardSampler, evaluate, evaluate_predictions
from ccnet.engine.metrics import ConfusionMatrix

NUM_CLASSES = 3
INFO = DatasetInfo(
    name="tiny",
    class_names=("a", "b", "c"),
    palette=((255, 0, 0), (0, 255, 0), (0, 0, 255)),
    flip_pairs=((0, 1),),
)


class TinyDataset:
    """Follows the ccnet dataset contract. Channel 0 of each image holds the class a
    :class:`ReadChannel` model will predict, so the confusion matrix is known in advance."""

    info = INFO

    def __init__(self, preds: list[np.ndarray], labels: list[np.ndarray]) -> None:
        self.preds, self.labels = preds, labels
        self.samples = [Sample(Path(f"img{i}.png"), Path(f"lbl{i}.png"), f"img{i}") for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image = np.zeros((*self.labels[i].shape, 3), dtype=np.uint8)
        image[..., 0] = self.preds[i]
        return image, self.labels[i]

    def __getitem__(self, i: int) -> dict:
        image, label = self.load(i)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float(),
            "label": torch.from_numpy(label.astype(np.int64)),
            "name": self.samples[i].name,
        }


class ReadChannel(nn.Module):
    """Pointwise stand-in model: logit_k = -(x_0 - k)^2, i.e. predicts the class stored in channel 0."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        classes = torch.arange(NUM_CLASSES, dtype=x.dtype).view(1, -1, 1, 1)
        return {"out": -((x[:, :1] - classes) ** 2)}


def _tiny_dataset(n: int = 3, seed: int = 0) -> TinyDataset:
    rng = np.random.default_rng(seed)
    sizes = [(5, 7), (6, 4), (3, 8), (4, 4), (7, 5)]
    preds, labels = [], []
    for i in range(n):
        labels.append(rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=sizes[i % len(sizes)]))
        preds.append(rng.integers(0, NUM_CLASSES, size=sizes[i % len(sizes)], dtype=np.uint8))
    return TinyDataset(preds, labels)


def _expected_matrix(dataset: TinyDataset) -> list[list[int]]:
    matrix = [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    for pred, label in zip(dataset.preds, dataset.labels, strict=True):
        for p, t in zip(pred.ravel().tolist(), label.ravel().tolist(), strict=True):
            if t != 255:
                matrix[t][p] += 1
    return matrix


def test_evaluate_equals_hand_built_matrix():
    # One 2x3 image written out: label [[0, 1, 255], [2, 2, 1]], prediction [[0, 2, 1], [2, 1, 1]]
    # -> rows gt: class 0: pred 0; class 1: pred 2, 1; class 2: pred 2, 1.
    dataset = TinyDataset([np.array([[0, 2, 1], [2, 1, 1]], np.uint8)], [np.array([[0, 1, 255], [2, 2, 1]], np.uint8)])
    cm = evaluate(ReadChannel(), dataset, num_classes=NUM_CLASSES, progress=False)
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]


def test_evaluate_over_images_of_different_sizes():
    dataset = _tiny_dataset(5)
    cm = evaluate(ReadChannel(), dataset, num_classes=NUM_CLASSES, progress=True)
    assert cm.matrix.tolist() == _expected_matrix(dataset)


def test_evaluate_accepts_a_loader_and_infer_kwargs():
    dataset = _tiny_dataset(3)
    loader = DataLoader(dataset, batch_size=1)
    cm = evaluate(
        ReadChannel(),
        loader,
        num_classes=NUM_CLASSES,
        infer_kwargs={"mode": "slide", "crop_size": 3, "stride": 2, "scales": (1.0,)},
        progress=False,
    )
    assert cm.matrix.tolist() == _expected_matrix(dataset)


def test_evaluate_flip_uses_the_dataset_flip_lut_by_default():
    # ReadChannel is mirror-equivariant without a class swap, so the dataset's flip pair (0, 1) makes the
    # flipped pass vote for the mirror class: classes 0 and 1 tie, and argmax picks 0.
    dataset = _tiny_dataset(2)
    cm = evaluate(ReadChannel(), dataset, num_classes=NUM_CLASSES, infer_kwargs={"flip": True}, progress=False)
    expected = np.array(_expected_matrix(dataset))
    expected[:, 0] += expected[:, 1]
    expected[:, 1] = 0
    assert cm.matrix.tolist() == expected.tolist()
    identity = list(range(256))
    cm = evaluate(
        ReadChannel(),
        dataset,
        num_classes=NUM_CLASSES,
        infer_kwargs={"flip": True, "flip_lut": identity},
        progress=False,
    )
    assert cm.matrix.tolist() == _expected_matrix(dataset)


def test_evaluate_resizes_predictions_to_label_size():
    class Upsampled(TinyDataset):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            item["image"] = item["image"].repeat_interleave(2, -1).repeat_interleave(2, -2)
            return item

    base = _tiny_dataset(2)
    dataset = Upsampled(base.preds, base.labels)
    cm = evaluate(ReadChannel(), dataset, num_classes=NUM_CLASSES, progress=False)
    assert cm.matrix.sum() == sum(int((lbl != 255).sum()) for lbl in base.labels)


@pytest.mark.parametrize(("length", "world_size"), [(5, 2), (7, 3), (2, 4), (0, 2)])
def test_shard_sampler_disjoint_cover_without_padding(length, world_size):
    shards = [list(ShardSampler(range(length), rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(length))
    assert [len(ShardSampler(range(length), r, world_size)) for r in range(world_size)] == [len(s) for s in shards]


def test_shard_sampler_defaults_and_validation():
    assert list(ShardSampler(range(3))) == [0, 1, 2]
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(range(3), rank=2, world_size=2)


def _distributed_worker(rank: int, world_size: int, init_file: str, expected: list[list[int]]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        cm = evaluate(ReadChannel(), _tiny_dataset(5), num_classes=NUM_CLASSES, progress=False)
        assert cm.matrix.tolist() == expected  # 5 images on 2 ranks: 3 + 2, none counted twice
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_distributed_evaluate_scores_each_image_once(tmp_path):
    expected = _expected_matrix(_tiny_dataset(5))
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "store"), expected), nprocs=2, join=True)


def _write_predictions(dataset: TinyDataset, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for pred, sample in zip(dataset.preds, dataset.samples, strict=True):
        Image.fromarray(pred).save(out_dir / f"{sample.name}.png")


def test_evaluate_predictions_reads_pngs(tmp_path):
    dataset = _tiny_dataset(4)
    _write_predictions(dataset, tmp_path)
    cm = evaluate_predictions(tmp_path, dataset, progress=False)
    assert isinstance(cm, ConfusionMatrix)
    assert cm.matrix.tolist() == _expected_matrix(dataset)
    assert (
        cm.matrix.tolist() == evaluate(ReadChannel(), dataset, num_classes=NUM_CLASSES, progress=False).matrix.tolist()
    )


def test_evaluate_predictions_missing_file(tmp_path):
    dataset = _tiny_dataset(3)
    _write_predictions(dataset, tmp_path)
    (tmp_path / "img1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img1\.png"):
        evaluate_predictions(tmp_path, dataset, progress=False)


def test_evaluate_predictions_size_mismatch(tmp_path):
    dataset = _tiny_dataset(2)
    _write_predictions(dataset, tmp_path)
    Image.fromarray(np.zeros((2, 9), np.uint8)).save(tmp_path / "img1.png")
    with pytest.raises(ValueError, match=r"img1\.png: prediction size 9x2 differs from label size 4x6"):
        evaluate_predictions(tmp_path, dataset, progress=False)


def test_evaluate_predictions_rejects_colour_pngs(tmp_path):
    dataset = _tiny_dataset(1)
    colour = np.zeros((5, 7, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "img0.png")
    with pytest.raises(ValueError, match=r"img0\.png: colour"):
        evaluate_predictions(tmp_path, dataset, progress=False)


def test_evaluate_predictions_needs_labels(tmp_path):
    dataset = _tiny_dataset(1)
    _write_predictions(dataset, tmp_path)
    dataset.samples = [Sample(Path("img0.png"), None, "img0")]
    with pytest.raises(ValueError, match="no ground-truth label"):
        evaluate_predictions(tmp_path, dataset, progress=False)


# --- agreement with the official Cityscapes evaluation --------------------------------------------


class CityscapesLabelIds:
    """Minimal Cityscapes-format dataset: ``*_gtFine_labelIds.png`` mapped to train ids on load."""

    def __init__(self, label_paths: list[Path], lut: np.ndarray, info: DatasetInfo) -> None:
        self.lut, self.info = lut, info
        self.samples = [Sample(p, p, p.name.removesuffix("_gtFine_labelIds.png")) for p in label_paths]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        label = self.lut[np.asarray(Image.open(self.samples[i].label))]
        return np.zeros((*label.shape, 3), np.uint8), label


def test_agrees_with_cityscapesscripts(tmp_path):
    # The official script's pixel-level part runs as is with numpy 2.x; only its instance-level
    # scoring (np.in1d, removed in numpy 2.4) must be switched off: evalInstLevelScore = False.
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval
    from cityscapesscripts.helpers.labels import labels as cs_labels

    eval_labels = sorted((lbl for lbl in cs_labels if 0 <= lbl.trainId < 255), key=lambda lbl: lbl.trainId)
    info = DatasetInfo("cityscapes", tuple(lbl.name for lbl in eval_labels), tuple(lbl.color for lbl in eval_labels))
    label_to_train = np.full(256, 255, dtype=np.uint8)
    train_to_label = np.zeros(256, dtype=np.uint8)  # train id 255 -> label id 0 ("unlabeled", ignored)
    for lbl in cs_labels:
        if 0 <= lbl.trainId < 255:
            label_to_train[lbl.id] = lbl.trainId
            train_to_label[lbl.trainId] = lbl.id

    rng = np.random.default_rng(0)
    # Ground truth: ignored ids (0 unlabeled, 1 ego vehicle, 4 static, 9 parking) and a few classes.
    gt_ids = np.array([0, 1, 4, 9, 7, 8, 11, 24, 26, 33], dtype=np.uint8)
    # Predictions: mostly right; else a random train id, including classes absent from the ground truth
    # (pole, sky: IoU 0) and 255 (written as label id 0, a miss).
    wrong_train_ids = np.array([0, 1, 2, 5, 10, 11, 13, 18, 255], dtype=np.uint8)
    gt_dir, pred_label_dir, pred_train_dir = (tmp_path / "gtFine" / "val" / "city"), tmp_path / "pl", tmp_path / "pt"
    for d in (gt_dir, pred_label_dir, pred_train_dir):
        d.mkdir(parents=True)
    gt_files, pred_files = [], []
    for i, size in enumerate([(20, 30), (24, 16), (9, 11)]):
        name = f"city_000000_{i:06d}"
        gt = rng.choice(gt_ids, size=size)
        gt_train = label_to_train[gt]
        pred_train = np.where(rng.random(size) < 0.6, gt_train, rng.choice(wrong_train_ids, size=size))
        Image.fromarray(gt).save(gt_dir / f"{name}_gtFine_labelIds.png")
        Image.fromarray(train_to_label[pred_train]).save(pred_label_dir / f"{name}_pred.png")
        Image.fromarray(pred_train.astype(np.uint8)).save(pred_train_dir / f"{name}.png")
        gt_files.append(str(gt_dir / f"{name}_gtFine_labelIds.png"))
        pred_files.append(str(pred_label_dir / f"{name}_pred.png"))

    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.quiet = True
    args.JSONOutput = False
    args.exportFile = str(tmp_path / "result.json")
    args.predictionPath = str(pred_label_dir)
    official = cs_eval.evaluateImgLists(pred_files, gt_files, args)

    dataset = CityscapesLabelIds([Path(f) for f in gt_files], label_to_train, info)
    ours = evaluate_predictions(pred_train_dir, dataset, progress=False).compute()

    for lbl in eval_labels:
        theirs = official["classScores"][lbl.name]
        mine = ours.iou[lbl.trainId]
        assert (math.isnan(theirs) and math.isnan(mine)) or abs(theirs - mine) < 1e-6, lbl.name
    assert abs(official["averageScoreClasses"] - ours.miou) < 1e-6
    # The fixture exercises every case: present classes, a predicted-only class (IoU 0), absent ones (NaN).
    assert any(v == 0.0 for v in ours.iou) and any(math.isnan(v) for v in ours.iou)
    assert sum(0 < v < 1 for v in ours.iou) >= 5
