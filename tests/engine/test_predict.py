import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ccnet.data import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ccnet.data.base import Sample, SegmentationDataset
from ccnet.data.io import DatasetError
from ccnet.engine.evaluate import evaluate_predictions
from ccnet.engine.predict import blend, collect_inputs, predict_images

INFO = DatasetInfo(
    name="tiny",
    class_names=("dark", "mid", "bright"),
    palette=((255, 0, 0), (0, 255, 0), (0, 0, 255)),
)


class Brightness(nn.Module):
    """Pointwise stand-in: the class is the red channel's intensity band (dark / mid / bright).

    Works on normalised input; ``calls`` records the batch shapes it saw.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append(tuple(x.shape))
        red = x[:, :1] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to 0..255
        centres = torch.tensor([42.0, 127.0, 212.0]).view(1, 3, 1, 1)
        return {"out": -((red - centres) ** 2) / 100.0}


def expected_labels(image: np.ndarray) -> np.ndarray:
    return np.digitize(image[..., 0].astype(np.float64), [84.5, 169.5]).astype(np.uint8)


def _write_image(path: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return image


@pytest.fixture
def images(tmp_path) -> dict[str, np.ndarray]:
    """Four PNGs in tmp_path/in: two 6x8, one 5x9, one 6x8 again (lossless, so pixels are known)."""
    sizes = {"a": (6, 8), "b": (5, 9), "c": (6, 8), "d": (6, 8)}
    return {
        name: _write_image(tmp_path / "in" / f"{name}.png", size, i) for i, (name, size) in enumerate(sizes.items())
    }


def test_writes_label_colour_and_overlay(tmp_path, images):
    paths = collect_inputs(tmp_path / "in")
    out = predict_images(Brightness(), paths, tmp_path / "out" / "nested", info=INFO, progress=False)
    assert out == [tmp_path / "out" / "nested" / f"{n}.png" for n in "abcd"]
    for name, image in images.items():
        label_img = Image.open(tmp_path / "out" / "nested" / f"{name}.png")
        assert label_img.mode == "L" and label_img.size == (image.shape[1], image.shape[0])
        label = np.asarray(label_img)
        np.testing.assert_array_equal(label, expected_labels(image))
        color = np.asarray(Image.open(tmp_path / "out" / "nested" / f"{name}_color.png"))
        np.testing.assert_array_equal(color, INFO.colorize(label))
        overlay = np.asarray(Image.open(tmp_path / "out" / "nested" / f"{name}_overlay.png"))
        assert overlay.shape == image.shape
        # A 50 % blend: within rounding of the mean of image and colour mask.
        mean = (image.astype(np.float64) + color) / 2
        assert np.abs(overlay - mean).max() <= 0.5


def test_batches_group_images_of_the_same_size(tmp_path, images):
    model = Brightness()
    predict_images(model, collect_inputs(tmp_path / "in"), tmp_path / "out", info=INFO, batch_size=2, progress=False)
    # a, c, d are 6x8 (batches of 2 and 1), b is 5x9.
    assert sorted(model.calls) == sorted([(2, 3, 6, 8), (1, 3, 6, 8), (1, 3, 5, 9)])


def test_slide_inference_via_infer_kwargs(tmp_path, images):
    model = Brightness()
    kwargs = {"mode": "slide", "crop_size": 4, "stride": 3}
    predict_images(model, [tmp_path / "in" / "b.png"], tmp_path / "out", info=INFO, infer_kwargs=kwargs, progress=True)
    assert {c[-2:] for c in model.calls} == {(4, 4)}
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "b.png")), expected_labels(images["b"]))


def test_label_pngs_round_trip_through_evaluate_predictions(tmp_path, images):
    paths = collect_inputs(tmp_path / "in")
    predict_images(Brightness(), paths, tmp_path / "out", info=INFO, progress=False)
    # Ground truth = what the model should predict, except an ignored row and one wrong pixel.
    samples = []
    for path in paths:
        label = expected_labels(images[path.stem])
        label[0, :] = 255
        if path.stem == "b":
            label[1, 0] = (label[1, 0] + 1) % 3
        label_path = tmp_path / "labels" / f"{path.stem}.png"
        label_path.parent.mkdir(exist_ok=True)
        Image.fromarray(label).save(label_path)
        samples.append(Sample(path, label_path, path.stem))
    cm = evaluate_predictions(tmp_path / "out", SegmentationDataset(samples, INFO), progress=False)
    scored = sum((img.shape[0] - 1) * img.shape[1] for img in images.values())
    assert cm.matrix.sum() == scored and cm.matrix.diagonal().sum() == scored - 1


def test_collect_inputs_single_file_folder_glob_and_list(tmp_path, images):
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "sub").mkdir()
    _write_image(tmp_path / "in" / "sub" / "e.JPG", (4, 4), 9)
    folder = collect_inputs(tmp_path / "in")
    assert [p.name for p in folder] == ["a.png", "b.png", "c.png", "d.png"]  # sorted, images only, not recursive
    assert collect_inputs(tmp_path / "in" / "b.png") == [tmp_path / "in" / "b.png"]
    assert [p.name for p in collect_inputs(str(tmp_path / "in" / "[ab].png"))] == ["a.png", "b.png"]
    recursive = collect_inputs(str(tmp_path / "in" / "**" / "*"))
    assert sorted(p.name for p in recursive) == ["a.png", "b.png", "c.png", "d.png", "e.JPG"]
    both = collect_inputs([tmp_path / "in" / "d.png", str(tmp_path / "in" / "a.*")])
    assert [p.name for p in both] == ["d.png", "a.png"]


@pytest.mark.parametrize("spec", ["missing.png", "missing_dir/*.png", "empty"])
def test_collect_inputs_bad_spec(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / spec))):
        collect_inputs(tmp_path / spec)
    with pytest.raises(FileNotFoundError):
        collect_inputs([])


def test_duplicate_stems_are_rejected(tmp_path):
    _write_image(tmp_path / "x" / "same.png", (4, 4), 0)
    _write_image(tmp_path / "y" / "same.png", (4, 4), 1)
    with pytest.raises(ValueError, match="same"):
        predict_images(Brightness(), [tmp_path / "x" / "same.png", tmp_path / "y" / "same.png"], tmp_path, info=INFO)


def test_greyscale_and_rgba_inputs_are_read_as_rgb(tmp_path):
    Image.fromarray(np.full((4, 5), 200, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.full((4, 5, 4), 30, np.uint8)).save(tmp_path / "rgba.png")
    out = predict_images(Brightness(), [tmp_path / "grey.png", tmp_path / "rgba.png"], tmp_path / "o", info=INFO)
    assert np.asarray(Image.open(out[0])).tolist() == [[2] * 5] * 4
    assert np.asarray(Image.open(out[1])).tolist() == [[0] * 5] * 4


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"bad\.png"):
        predict_images(Brightness(), [tmp_path / "bad.png"], tmp_path / "o", info=INFO, progress=False)


def test_blend():
    image = np.array([[[0, 100, 255]]], np.uint8)
    color = np.array([[[255, 0, 255]]], np.uint8)
    assert blend(image, color).tolist() == [[[128, 50, 255]]]
    assert blend(image, color, alpha=0.0).tolist() == image.tolist()
