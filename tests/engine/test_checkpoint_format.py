"""Checkpoint format and stored-config migration: the format the trainer writes is read back and
checked, a newer one is refused by name, and a config key renamed after a checkpoint was written
migrates (with a warning) instead of making the checkpoint unreadable."""

import warnings

import pytest
import yaml

from ccnet import config as config_module
from ccnet.cli.common import model_from_checkpoint
from ccnet.config import Config, config_from_dict, load_config
from ccnet.data.synthetic import SYNTHETIC_INFO
from ccnet.engine.build import build_model
from ccnet.engine.checkpoint import FORMAT_VERSION, check_format, load_checkpoint
from ccnet.errors import CheckpointError, ConfigError
from ccnet.files import atomic_save


def _write_checkpoint(path, model_config: Config, **entries):
    """A checkpoint laid out as `Trainer._save_checkpoint` writes it (the training state left out)."""
    model = build_model(model_config, SYNTHETIC_INFO.num_classes)
    checkpoint = {"format": FORMAT_VERSION, "iteration": 0, "model": model.state_dict(),
                  "config": model_config.to_dict(), "info": SYNTHETIC_INFO.to_dict()}
    checkpoint.update(entries)
    atomic_save(checkpoint, path)
    return path


def test_the_current_format_is_read_back(tmp_path):
    path = _write_checkpoint(tmp_path / "latest.pt", Config())
    assert check_format(load_checkpoint(path), path) == FORMAT_VERSION
    _, config, info = model_from_checkpoint(str(path), [])
    assert config == Config() and info == SYNTHETIC_INFO


def test_a_newer_format_is_refused_with_both_versions(tmp_path):
    path = _write_checkpoint(tmp_path / "latest.pt", Config(), format=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=rf"{path}: checkpoint format {FORMAT_VERSION + 1} is newer than "
                                              rf"this ccnet-pytorch reads \(up to {FORMAT_VERSION}\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", ["1", 0, True, 1.5])
def test_a_format_that_is_not_a_version_is_refused(tmp_path, bad):
    with pytest.raises(CheckpointError, match=r"'format' is .*not a checkpoint format version"):
        check_format({"format": bad, "model": {}}, tmp_path / "x.pt")


def test_a_checkpoint_without_format_is_the_first_format():
    assert check_format({"model": {}}, "x.pt") == 1


def _renamed_lr(stored: dict) -> dict:
    """``stored`` as an older release would have written it, had ``optim.lr`` been ``optim.base_lr``."""
    stored["optim"]["base_lr"] = stored["optim"].pop("lr")
    return stored


def test_without_a_migration_a_renamed_key_is_unreadable():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.base_lr'"):
        config_from_dict(_renamed_lr(Config().to_dict()))


def test_a_renamed_key_in_a_stored_checkpoint_migrates_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(config_module.RENAMED_KEYS, "optim.base_lr", "optim.lr")
    config = Config()
    config.optim.lr = 0.125
    path = _write_checkpoint(tmp_path / "latest.pt", config, config=_renamed_lr(config.to_dict()))
    with pytest.warns(UserWarning, match=r"config key 'optim.base_lr' is now 'optim.lr'; read as optim.lr=0.125"):
        _, loaded, _ = model_from_checkpoint(str(path), [])
    assert loaded.optim.lr == 0.125 and loaded == config


def test_a_removed_key_is_dropped_with_a_warning(monkeypatch):
    monkeypatch.setitem(config_module.RENAMED_KEYS, "model.old_setting", None)
    stored = Config().to_dict()
    stored["model"]["old_setting"] = 3
    with pytest.warns(UserWarning, match=r"'model.old_setting' no longer exists; its value 3 is ignored"):
        assert config_from_dict(stored) == Config()


def test_the_new_key_wins_when_both_are_stored(monkeypatch):
    monkeypatch.setitem(config_module.RENAMED_KEYS, "optim.base_lr", "optim.lr")
    stored = Config().to_dict()
    stored["optim"]["lr"], stored["optim"]["base_lr"] = 0.5, 0.25
    with pytest.warns(UserWarning):
        assert config_from_dict(stored).optim.lr == 0.5


def test_a_config_file_with_a_renamed_key_migrates_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setitem(config_module.RENAMED_KEYS, "optim.base_lr", "optim.lr")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"optim": {"base_lr": 0.25}}))
    with pytest.warns(UserWarning, match=rf"{path}: config key 'optim.base_lr' is now 'optim.lr'"):
        assert load_config(path).optim.lr == 0.25


def test_migration_leaves_the_stored_dict_alone(monkeypatch):
    monkeypatch.setitem(config_module.RENAMED_KEYS, "optim.base_lr", "optim.lr")
    stored = _renamed_lr(Config().to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config_from_dict(stored)
    assert "base_lr" in stored["optim"] and "lr" not in stored["optim"]


def test_dataset_info_round_trips_through_plain_values():
    assert type(SYNTHETIC_INFO).from_dict(SYNTHETIC_INFO.to_dict()) == SYNTHETIC_INFO
