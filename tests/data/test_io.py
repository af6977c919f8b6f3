"""Reading images and label maps: dtypes, palette indices, bit depths, and errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet.data import DatasetError, read_image, read_label
from ccnet.data.io import write_label
from ccnet.data.voc import voc_palette

RNG = np.random.default_rng(0)


def palette_png(path, indices: np.ndarray) -> None:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([c for colour in voc_palette(256) for c in colour])
    image.save(path)


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_read_image_rgb_uint8(tmp_path, suffix):
    array = RNG.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    Image.fromarray(array).save(path)
    image = read_image(path)
    assert image.shape == (8, 12, 3) and image.dtype == np.uint8
    assert image.flags.writeable
    if suffix != ".jpg":
        np.testing.assert_array_equal(image, array)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_read_image_converts_other_modes_to_rgb(tmp_path, mode):
    path = tmp_path / "a.png"
    Image.new(mode, (12, 8)).save(path)
    assert read_image(path).shape == (8, 12, 3)


def test_read_label_takes_palette_index_not_colour(tmp_path):
    indices = np.array([[0, 15, 255], [1, 20, 15]], dtype=np.uint8)
    path = tmp_path / "voc.png"
    palette_png(path, indices)
    with Image.open(path) as pil:
        assert pil.mode == "P"
    label = read_label(path)
    assert label.dtype == np.uint8 and label.shape == (2, 3)
    np.testing.assert_array_equal(label, indices)


def test_read_label_grey_and_16bit(tmp_path):
    values = np.array([[0, 7, 255], [33, 19, 1]])
    Image.fromarray(values.astype(np.uint8)).save(tmp_path / "l.png")
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "i16.png")
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i32.tif")
    for name in ("l.png", "i16.png", "i32.tif"):
        label = read_label(tmp_path / name)
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, values)


def test_read_label_16bit_value_above_255_is_an_error(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.array([[0, 300]], dtype=np.uint16)).save(path)
    with pytest.raises(DatasetError, match=r"big\.png: label values 0\.\.300"):
        read_label(path)


def test_read_label_rgb(tmp_path):
    grey = np.repeat(np.array([[[3], [4]]], dtype=np.uint8), 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label(tmp_path / "grey.png"), [[3, 4]])
    colour = np.array([[[128, 64, 128], [0, 0, 142]]], dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DatasetError, match=r"colour\.png: colour \(RGB\) label map"):
        read_label(tmp_path / "colour.png")


def test_missing_file_names_it(tmp_path):
    for reader in (read_image, read_label):
        with pytest.raises(DatasetError, match=r"nothere\.png: file not found"):
            reader(tmp_path / "nothere.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_names_it(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"cut\{suffix}: cannot read image"):
        read_image(path)
    with pytest.raises(DatasetError, match=rf"cut\{suffix}"):
        read_label(path)


def test_not_an_image_names_it(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a png")
    with pytest.raises(DatasetError, match=r"notes\.png: cannot read image"):
        read_image(path)


def test_write_label_roundtrip_and_leaves_no_temporary_file(tmp_path):
    label = RNG.integers(0, 20, (8, 12), dtype=np.uint8)
    write_label(tmp_path / "out.png", label)
    np.testing.assert_array_equal(read_label(tmp_path / "out.png"), label)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
