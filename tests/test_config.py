from pathlib import Path

import pytest

from ccnet.config import Config, ConfigError, apply_overrides, config_from_dict, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.run_name() == path.stem
    assert config_from_dict(config.to_dict()) == config


def test_official_cityscapes_settings():
    config = load_config(Path(__file__).parents[1] / "configs" / "cityscapes_official.yaml")
    assert (config.model.backbone, config.model.recurrence) == ("resnet101", 2)
    assert config.data.crop_size == [769, 769] and config.data.batch_size == 8
    assert config.optim.lr == 0.01 and config.optim.iterations == 60000
    assert (config.loss.ohem, config.loss.ohem_thresh, config.loss.ohem_min_kept) == (True, 0.7, 100000)


def test_overrides_parse_yaml_values():
    config = load_config(None, ["optim.lr=0.5", "data.crop_size=[33, 65]", "data.root=/data/x", "eval.crop_size=null",
                                "loss.ohem=true", "optim.iterations=7"])
    assert config.optim.lr == 0.5 and config.data.crop_size == [33, 65] and config.data.root == "/data/x"
    assert config.eval.crop_size is None and config.loss.ohem is True and config.optim.iterations == 7


def test_int_accepted_for_float():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("nope.x=1", "unknown config key 'nope'"),
        ("optim.lr=fast", "config key 'optim.lr' expects float, got str 'fast'"),
        ("model.recurrence=2.5", "config key 'model.recurrence' expects int, got float 2.5"),
        ("loss.ohem=1", "config key 'loss.ohem' expects bool, got int 1"),
        ("data.crop_size=[1, a]", r"config key 'data.crop_size\[1\]' expects int"),
        ("model=3", "config key 'model' is a section"),
        ("optim.lr", "must look like key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown config key .optim\.momentun."):
        load_config(typo)


def test_apply_overrides_in_place():
    config = Config()
    assert apply_overrides(config, ["seed=3"]) is config and config.seed == 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_spell_out_the_whole_model(path):
    # The dataclass defaults are the CPU demo's; a published config must not inherit them.
    import dataclasses

    import yaml

    from ccnet.config import DetectionConfig, ModelConfig

    values = yaml.safe_load(path.read_text())
    section, fields = ("detection", DetectionConfig) if values.get("task") == "detection" else ("model", ModelConfig)
    missing = {f.name for f in dataclasses.fields(fields)} - set(values[section])
    assert not missing, f"{path.name} leaves {section} keys to the defaults: {sorted(missing)}"
    if not path.name.startswith("synthetic"):  # the CPU jobs (10x head lr, clipping) are not published settings
        optim = yaml.safe_load(path.read_text())["optim"]
        assert optim["head_lr_mult"] == 1.0 and optim["clip_grad_norm"] is None


def test_synthetic_yaml_is_the_default_job():
    assert load_config(Path(__file__).parents[1] / "configs" / "synthetic.yaml") == Config()


def test_run_name_says_what_is_trained(tmp_path):
    assert Config().run_name() == "synthetic"
    folder = apply_overrides(Config(), ["data.dataset=folder", f"data.root={tmp_path / 'streets'}"])
    assert folder.run_name() == "streets"
    assert apply_overrides(Config(), ["data.dataset=camvid", "data.root=/x"]).run_name() == "camvid"
    assert apply_overrides(Config(), ["name=mine", "data.dataset=camvid"]).run_name() == "mine"


def test_yaml_1_1_words_stay_strings(tmp_path):
    """``amp=off`` is the string "off" (PyYAML alone reads on/off/yes/no as booleans)."""
    assert apply_overrides(Config(), ["amp=off"]).amp == "off"
    path = tmp_path / "c.yaml"
    path.write_text("amp: off\nchannels_last: true\n")
    config = load_config(path)
    assert config.amp == "off" and config.channels_last is True
    with pytest.raises(ConfigError, match="'channels_last' expects bool"):
        apply_overrides(Config(), ["channels_last=yes"])


def test_video_configs():
    configs = Path(__file__).parents[1] / "configs"
    camvid = load_config(configs / "camvid_ccnet3d.yaml")
    assert camvid.is_video and camvid.video.clip_length == 5 and camvid.data.dataset == "camvid_video"
    assert (camvid.model.backbone, camvid.model.recurrence) == ("resnet101", 3)
    synthetic = load_config(configs / "synthetic_video.yaml")
    assert synthetic.is_video and synthetic.video.attention == "3d" and synthetic.model.recurrence == 2
    assert not Config().is_video


@pytest.mark.parametrize("override, allowed", [
    ("eval.mode=slid", "'whole', 'slide'"),
    ("amp=fp32", "'auto', 'off', 'bf16', 'fp16'"),
    ("model.context=psp", "'rcca', 'nonlocal', 'ppm', 'aspp', 'none'"),
    ("optim.schedule=cosine", "'poly', 'step'"),
    ("task=segmentaton", "'segmentation', 'detection'"),
    ("model.norm=sync", "'bn', 'syncbn', 'gn', 'frozenbn'"),
    ("model.recurrence=-3", ">= 0"),
    ("optim.lr=-1", "> 0.0"),
    ("detection.context=psp", "'rcca', 'nonlocal', 'none'"),
    ("detection.norm=frozenbn", "'frozen_bn', 'bn', 'gn'"),
    ("loss.consistency_warmup_iters=-1", ">= 0"),
    ("video.attention=1d", "'3d', '2d'"),
    ("video.clip_length=0", ">= 1"),
    ("data.synthetic_task=three_keys", "'one_key', 'two_keys', 'columns'"),
])
def test_bad_values_refused_at_load_with_allowed_values(override, allowed):
    from ccnet.config import load_config
    from ccnet.errors import ConfigError
    key, value = override.split("=")
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert message.startswith(f"{key}: ") and value in message and allowed in message
    assert "\n" not in message


def test_bad_value_in_stored_config_refused():
    from ccnet.config import Config, config_from_dict
    from ccnet.errors import ConfigError
    values = Config().to_dict()
    values["eval"]["mode"] = "slid"
    with pytest.raises(ConfigError, match=r"eval\.mode: 'slid' is not one of 'whole', 'slide'"):
        config_from_dict(values)


def test_bad_value_in_a_yaml_file_names_the_file_and_key(tmp_path):
    from ccnet.config import load_config
    from ccnet.errors import ConfigError
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  schedule: cosine\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.schedule: 'cosine' is not one of 'poly', 'step'"):
        load_config(path)
    path.write_text("optim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"optim\.lr: -1\.0 is not allowed \(allowed: > 0\.0\)"):
        load_config(path)


def test_choices_match_the_code_that_builds_them():
    """The config's allowed values are copies of the tuples the model code checks against."""
    import typing

    from ccnet.config import DetectionConfig, ModelConfig
    from ccnet.nn import CONTEXTS
    from ccnet.nn.norm import NORMS

    model_hints = typing.get_type_hints(ModelConfig)
    assert typing.get_args(model_hints["norm"]) == NORMS
    assert typing.get_args(model_hints["context"]) == CONTEXTS
    try:
        from ccnet.detection.model import CONTEXTS as DETECTION_CONTEXTS
        from ccnet.detection.model import NORMS as DETECTION_NORMS
    except ImportError:  # the [detection] extra (torchvision) is not installed
        return
    detection_hints = typing.get_type_hints(DetectionConfig)
    assert typing.get_args(detection_hints["context"]) == DETECTION_CONTEXTS
    assert typing.get_args(detection_hints["norm"]) == DETECTION_NORMS
