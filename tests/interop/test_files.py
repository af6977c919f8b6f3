"""Reading weight files safely: truncated, pickled code, unknown formats, prefixes."""

import os
import pickle

import pytest
import torch

from ccnet.interop import WeightsFileError, detect_format, load_backbone, load_pretrained, read_weights


def _small_torchvision_resnet18_state():
    """A torchvision ResNet-18 state dict (BasicBlocks, 7x7 stem)."""
    from ccnet.models import resnet18

    state = resnet18(stem="standard").state_dict()
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    return state


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_pickled_code_refused_with_file_name(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload()}, path)
    with pytest.raises(WeightsFileError, match=r"evil\.pth: cannot be read safely.*could run code"):
        load_pretrained(path)
    assert "must never run" not in capfd.readouterr().out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"a": _Payload()}, handle)
    with pytest.raises(WeightsFileError, match=r"plain\.pkl"):
        read_weights(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file_named(tmp_path, legacy):
    path = tmp_path / "cut.pth"
    torch.save(_small_torchvision_resnet18_state(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match=r"cut\.pth: .*(truncated|corrupt)"):
        load_backbone(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_pretrained(tmp_path / "nope.pth")
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsFileError, match=r"other\.pth: unknown weight format \(keys: encoder\.weight"):
        load_pretrained(path)
    with pytest.raises(ValueError, match="unknown format 'caffe'"):
        load_pretrained(path, format="caffe")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsFileError, match="holds no state dict"):
        read_weights(path)
    path = tmp_path / "mixed.pth"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(WeightsFileError, match="'epoch' is a int, not a tensor"):
        read_weights(path)


def test_bare_ccnet_state_dict_explained():
    from ccnet.models import CCNet

    state = CCNet(2, backbone="resnet18", head_channels=8, aux_channels=8).state_dict()
    with pytest.raises(WeightsFileError, match=r"bare ccnet state dict.*save_pretrained"):
        load_pretrained(state)


def test_legacy_format_with_module_prefix_and_backbone_only(tmp_path):
    state = _small_torchvision_resnet18_state()
    path = tmp_path / "resnet18-legacy.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path, _use_new_zipfile_serialization=False)
    loaded, meta = read_weights(path)
    assert meta is None and "conv1.weight" in loaded and not any(k.startswith("module.") for k in loaded)
    assert detect_format(loaded) == "torchvision"
    backbone = load_backbone(path, output_stride=32)
    assert type(backbone.layer1[0]).__name__ == "BasicBlock"
    with pytest.raises(ValueError, match=r"backbone-only checkpoint.*load_backbone"):
        load_pretrained(path)
