"""ccnet's own format: save_pretrained / from_pretrained (safetensors + config.json), atomic writes."""

import json

import pytest
import torch

from ccnet.interop import load_pretrained
from ccnet.models import CCNet, hub

NAMES = ("background", "cat", "dog")
PALETTE = ((0, 0, 0), (200, 10, 10), (10, 200, 10))


def _tiny(**kwargs) -> CCNet:
    torch.manual_seed(0)
    model = CCNet(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux_channels=8, **kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(7)
        model.head.cca.gamma.fill_(0.5)
    return model.eval()


def test_round_trip_identical(tmp_path):
    model = _tiny(recurrence=1, consistency=True)
    out = model.save_pretrained(tmp_path / "m", class_names=NAMES, palette=PALETTE, mean=(1, 2, 3), std=(4, 5, 6))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "ccnet" and config["format_version"] == hub.FORMAT_VERSION
    assert config["model"] == model.config and config["id2label"]["1"] == "cat"
    assert config["mean"] == [1.0, 2.0, 3.0] and config["std"] == [4.0, 5.0, 6.0]

    loaded = CCNet.from_pretrained(out)
    assert not loaded.training and loaded.config == model.config
    assert loaded.class_names == NAMES and loaded.palette == PALETTE
    assert loaded.mean == (1.0, 2.0, 3.0) and loaded.std == (4.0, 5.0, 6.0)
    expected = model.state_dict()
    assert list(loaded.state_dict()) == list(expected)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    x = torch.randn(1, 3, 33, 45)
    with torch.no_grad():
        assert torch.equal(loaded(x)["out"], model(x)["out"])
    # load_pretrained recognises the folder (and the weights file inside it).
    assert load_pretrained(out).class_names == NAMES
    assert load_pretrained(out / "model.safetensors", format="ccnet").config == model.config


def test_defaults_and_resave_keep_info(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path / "a")
    loaded = CCNet.from_pretrained(tmp_path / "a")
    assert loaded.class_names is None and loaded.palette is None
    assert loaded.mean == pytest.approx((123.675, 116.28, 103.53))
    loaded.class_names = NAMES
    loaded.save_pretrained(tmp_path / "a")  # overwrite an existing model folder
    assert CCNet.from_pretrained(tmp_path / "a").class_names == NAMES


def test_bad_labels_refused(tmp_path):
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        _tiny().save_pretrained(tmp_path / "m", class_names=("a", "b"))
    with pytest.raises(ValueError, match="palette"):
        _tiny().save_pretrained(tmp_path / "m", palette=((0, 0, 0), (1, 2, 3), (1, 2, 300)))
    assert not (tmp_path / "m").exists()


def test_crash_mid_write_leaves_old_model(tmp_path, monkeypatch):
    target = tmp_path / "m"
    _tiny().save_pretrained(target, class_names=NAMES)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        _tiny(recurrence=1).save_pretrained(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # temporary folder removed
    with pytest.raises(OSError, match="disk full"):
        _tiny().save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_refuses_to_replace_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        _tiny().save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_truncated_or_bad_files_named(tmp_path):
    target = _tiny().save_pretrained(tmp_path / "m")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        CCNet.from_pretrained(target)
    (target / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        CCNet.from_pretrained(target)
    (target / "config.json").write_text(json.dumps({"format": "ccnet", "format_version": 99, "model": {}}))
    with pytest.raises(ValueError, match="format_version 99 is newer"):
        CCNet.from_pretrained(target)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        CCNet.from_pretrained(tmp_path / "missing")


def test_weights_that_do_not_fit_config(tmp_path):
    target = _tiny().save_pretrained(tmp_path / "m")
    config = json.loads((target / "config.json").read_text())
    config["model"]["head_channels"] = 32
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors: weights do not fit .*22 shape conflicts \(head\."):
        CCNet.from_pretrained(target)
