"""The ``ccnet`` command line: help, one-line errors, and train -> predict -> evaluate."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.cli import build_parser, main
from ccnet.data.synthetic import SyntheticContextDataset

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=2", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux_channels=8", "optim.iterations=1", "num_visualizations=0",
]


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "convert", "export", "prepare", "demo",
                                     "push-to-hub"])
def test_every_option_is_explained(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ccnet " + command in capsys.readouterr().out
    subparser = build_parser()._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--output", str(out), "--no-progress"]) == 0
    return out / "checkpoints" / "latest.pt"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "data.dataset=cityscapes"], "config key 'data.root' is required for dataset 'cityscapes'"),
        (["train", "data.dataset=cityscapes", "data.root=/no/such/dir"], "/no/such/dir"),
        (["train", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["train", "missing.yaml"], "missing.yaml: config file not found"),
        (["evaluate"], "give exactly one of --checkpoint"),
        (["evaluate", "--checkpoint", "/no/such.pt"], "/no/such.pt: checkpoint not found"),
        (["export", "/no/such.pt", "m.onnx"], "/no/such.pt"),
        (["predict", "--checkpoint", "/no/such.pt", "x.png", "--output", "o"], "/no/such.pt: checkpoint not found"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_wrong_checkpoint_for_the_config(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "model.backbone=resnet50"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint was trained with model.backbone='resnet18' but the config has 'resnet50'" in err
    corrupt = checkpoint.parent / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["evaluate", "--checkpoint", str(corrupt)]) == 2
    assert "corrupt.pt: not a readable checkpoint" in capsys.readouterr().err


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    """Files a user might pass as --checkpoint: hostile pickles, non-checkpoints, a folder."""
    root = tmp_path_factory.mktemp("bad")
    torch.save({"model": {}, "payload": _RunsCode()}, root / "hostile.pt")
    with open(root / "hostile.pkl", "wb") as handle:
        import pickle

        pickle.dump(_RunsCode(), handle)
    (root / "notes.pt").write_text("these are notes, not weights\n")
    (root / "random.pt").write_bytes(bytes(range(256)) * 4)
    (root / "empty.pt").write_bytes(b"")
    (root / "folder.pt").mkdir()
    return root


@pytest.mark.parametrize("name", ["hostile.pt", "hostile.pkl", "notes.pt", "random.pt", "empty.pt", "folder.pt"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "convert", "train"])
def test_bad_checkpoints_never_get_unsafe_advice(command, name, bad_checkpoints, tmp_path, capsys):
    path = str(bad_checkpoints / name)
    argv = {
        "evaluate": ["evaluate", "--checkpoint", path],
        "predict": ["predict", "--checkpoint", path, "x.png", "--output", str(tmp_path / "out")],
        "export": ["export", path, str(tmp_path / "m.onnx")],
        "convert": ["convert", path, str(tmp_path / "m")],
        "train": ["train", *TINY, "--output", str(tmp_path / "run"), "--resume", path, "--no-progress"],
    }[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "weights_only" not in err and "will likely succeed" not in err, err
    assert "this must never run" not in captured.out + captured.err
    assert name in err
    if name.startswith("hostile"):
        assert "cannot be read safely" in err and "print" in err and "not loaded" in err, err
    elif name != "folder.pt":
        assert "not a readable" in err, err


def test_checkpoint_of_another_label_set_is_refused_before_any_image(tmp_path, capsys):
    data = tmp_path / "three"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, 3, (40, 40), dtype=np.uint8)).save(data / "masks" / f"{i}.png")
    (data / "classes.txt").write_text("road\ncar\nsky\n")
    run = tmp_path / "run"
    assert main(["train", *TINY, "data.dataset=folder", f"data.root={data}", "data.train_split=all",
                 "data.val_split=all", "data.crop_size=[32,32]", "--output", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    checkpoint = str(run / "checkpoints" / "latest.pt")
    assert main(["evaluate", "--checkpoint", checkpoint, "data.dataset=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "the model has 3 classes (road, car, sky; trained on 'three')" in err, err
    assert "dataset 'synthetic' has 7" in err and "use the data it was trained on" in err, err
    # Continuing its training on the other data is refused the same way.
    assert main(["train", *TINY, "optim.iterations=2", "--output", str(tmp_path / "run2"), "--resume", checkpoint,
                 "--no-progress"]) == 2
    assert "the model has 3 classes" in capsys.readouterr().err


def test_training_banner_and_run_folder_name_the_dataset(tmp_path, capsys, monkeypatch):
    data = tmp_path / "streets"
    _write_folder_dataset(data)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "data.dataset=folder", f"data.root={data}", "data.train_split=all",
                 "data.val_split=all", "data.crop_size=[32,32]", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "training streets: CCNet resnet18" in out and "training synthetic" not in out, out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("streets-"), runs


def test_written_files_get_the_users_umask_permissions(checkpoint, tmp_path, capsys):
    import os

    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert main(["train", *TINY, "--output", str(run), "--no-progress"]) == 0
        assert main(["convert", str(run / "model"), str(tmp_path / "folder")]) == 0
        assert main(["export", str(tmp_path / "folder"), str(tmp_path / "m.onnx"), "--size", "48", "48"]) == 0
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.json")]) == 0
    finally:
        os.umask(old)
    written = [run / "checkpoints" / "latest.pt", run / "metrics.json", run / "model" / "model.safetensors",
               run / "model" / "config.json", tmp_path / "folder" / "model.safetensors",
               tmp_path / "folder" / "config.json", tmp_path / "m.onnx", tmp_path / "m.json"]
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {"0o644"}, modes
    folders = {p.name: oct(p.stat().st_mode & 0o777) for p in (run / "model", tmp_path / "folder")}
    assert set(folders.values()) == {"0o755"}, folders


def _write_folder_dataset(root, count=3):
    """Synthetic scenes in the generic folder layout (images/, masks/, classes.txt)."""
    source = SyntheticContextDataset("val", num_samples=count, size=(40, 56), seed=5)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image, label = source.render(i)
        Image.fromarray(image).save(root / "images" / f"scene{i}.png")
        Image.fromarray(label).save(root / "masks" / f"scene{i}.png")
    lines = [f"{n} {r} {g} {b}" for n, (r, g, b) in zip(source.info.class_names, source.info.palette, strict=True)]
    (root / "classes.txt").write_text("\n".join(lines) + "\n")


def test_predictions_scored_from_disk_equal_the_model_scored_directly(checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    _write_folder_dataset(data)
    dataset_args = ["data.dataset=folder", f"data.root={data}"]
    assert main(["evaluate", "--checkpoint", str(checkpoint), *dataset_args, "--output", str(tmp_path / "m.json")]) == 0
    assert main(["predict", "--checkpoint", str(checkpoint), str(data / "images"), "--output", str(tmp_path / "p"),
                 "--no-progress"]) == 0
    for i in range(3):
        label = np.asarray(Image.open(tmp_path / "p" / f"scene{i}.png"))
        assert label.shape == (40, 56) and label.max() < 7
        assert (tmp_path / "p" / f"scene{i}_color.png").is_file()
        assert (tmp_path / "p" / f"scene{i}_overlay.png").is_file()
    assert main(["evaluate", *dataset_args, "--predictions", str(tmp_path / "p"),
                 "--output", str(tmp_path / "d.json")]) == 0
    direct = json.loads((tmp_path / "m.json").read_text())
    from_disk = json.loads((tmp_path / "d.json").read_text())
    assert direct["iou"] == from_disk["iou"] and direct["miou"] == from_disk["miou"]
    assert "mIoU" in capsys.readouterr().out


def test_bad_image_inside_a_loader_worker_is_one_line_naming_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    _write_folder_dataset(data, count=2)
    broken = data / "images" / "scene1.png"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated PNG
    argv = ["train", *TINY, "data.dataset=folder", f"data.root={data}", "data.val_split=none", "data.workers=1",
            "data.crop_size=[32, 32]", "--output", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scene1.png" in err, err


def test_export_a_training_checkpoint_and_use_the_saved_model_folder(checkpoint, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(onnx_path), "--size", "37", "53"]) == 0, capsys.readouterr().err
    assert onnx_path.stat().st_size > 0
    # The trainer also leaves the final model in ccnet's own format; predict reads it directly.
    model_dir = checkpoint.parents[1] / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    image = tmp_path / "in.png"
    Image.fromarray(SyntheticContextDataset("val", num_samples=1, size=(40, 56)).render(0)[0]).save(image)
    assert main(["predict", "--checkpoint", str(model_dir), str(image), "--output", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "in.png")).shape == (40, 56)


def test_default_train_at_reduced_size_beats_chance(tmp_path, capsys):
    """The embedded default job (only smaller and shorter) finishes and beats the best constant guess."""
    from ccnet.engine.metrics import ConfusionMatrix

    out = tmp_path / "run"
    # 96x96 scenes at output stride 8 (12x12 features, like the full job's 192x192 at stride 16).
    argv = ["train", "data.synthetic_size=[96, 96]", "model.output_stride=8", "optim.iterations=200",
            "data.batch_size=4", "data.synthetic_val_samples=8",
            "num_visualizations=1", "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    val = SyntheticContextDataset("val", num_samples=8, size=(96, 96), seed=0)
    constant = ConfusionMatrix(val.info.num_classes)
    for i in range(len(val)):
        label = torch.from_numpy(val.render(i)[1]).long()
        constant.update(torch.zeros_like(label), label)  # everything background: the majority class
    chance = constant.compute()
    assert metrics["miou"] > chance.miou + 0.1, (metrics["miou"], chance.miou)
    assert metrics["mean_accuracy"] > chance.mean_accuracy + 0.2, (metrics["mean_accuracy"], chance.mean_accuracy)
    assert metrics["pixel_accuracy"] > chance.pixel_accuracy
    assert (out / "model" / "model.safetensors").is_file() and list((out / "predictions").glob("*.png"))
    assert "mIoU" in capsys.readouterr().out


def test_overrides_may_follow_the_options():
    from ccnet.cli import parse_args

    args = parse_args(["predict", "--checkpoint", "ck.pt", "a.png", "--output", "out", "eval.flip=true"])
    assert args.inputs == ["a.png", "eval.flip=true"]
    args = parse_args(["evaluate", "--checkpoint", "ck.pt", "--output", "m.json", "eval.mode=slide"])
    assert args.config == ["eval.mode=slide"]
    with pytest.raises(SystemExit):
        parse_args(["predict", "--checkpoint", "ck.pt", "a.png", "--output", "out", "--no-such-flag"])
    with pytest.raises(SystemExit):
        parse_args(["bench", "op", "x=1"])


def test_bad_eval_mode_refused_before_training(tmp_path, capsys):
    # Refused when the config is read: no run folder, no training step, one line naming the key.
    out = tmp_path / "run"
    assert main(["train", *TINY, "eval.mode=slid", "--output", str(out), "--no-progress"]) != 0
    assert not (out / "last.pt").exists() and not list(out.glob("*.pt"))
    assert "eval.mode: 'slid' is not one of 'whole', 'slide'" in capsys.readouterr().err
