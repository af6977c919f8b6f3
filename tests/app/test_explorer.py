"""ccnet explore without a browser: the model side of the page, finding the default model, and
the core working without the [app] extra."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

from ccnet.cli import main
from ccnet.cli.common import model_from_checkpoint
from ccnet.cli.explore import find_default_model
from ccnet.config import Config
from ccnet.data.synthetic import SyntheticContextDataset
from ccnet.viz import attention_maps
from ccnet.viz.figure import upsample_map


def test_explorer_shows_the_prediction_and_the_attention_of_a_pixel(model_folder):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    from ccnet.app.explorer import Explorer

    model, config, info = model_from_checkpoint(str(model_folder), [])
    explorer = Explorer(model, info, config.data.mean, config.data.std, max_side=128)
    image, _ = SyntheticContextDataset("val", size=(192, 160)).render(3)
    analysis = explorer.analyse(image)
    assert analysis.image.shape == (128, 107, 3)  # longer side downscaled to max_side
    assert analysis.prediction.shape == (128, 107)

    pixel = (100, 20)
    shown = explorer.attention_images(analysis, pixel)
    assert len(shown) == 2 and shown[0].shape == (384, 321, 3)  # enlarged 3x for display
    x = (torch.from_numpy(analysis.image).permute(2, 0, 1).float() - torch.tensor(config.data.mean).view(3, 1, 1)) \
        / torch.tensor(config.data.std).view(3, 1, 1)  # an independent normalisation
    maps = attention_maps(model, x, [pixel])
    # The loop-1 panel is red only on the pixel's row and column of feature cells.
    cross = upsample_map(maps.loops[0, 0], (128, 107), model.align_corners) > 0
    red = shown[0][::3, ::3, 0].astype(int) - shown[0][::3, ::3, 2].astype(int)
    assert red[~cross].max() < red[cross].max()
    assert "Pixel (y=100, x=20)" in explorer.describe(analysis, pixel)
    assert all(name in explorer.legend_html(analysis) for name in info.class_names)


def _write_run(runs, name, *, model=None, finished=True, mtime=0):
    run = runs / name
    (run / "checkpoints").mkdir(parents=True)
    config = Config().to_dict()
    config["model"].update(model or {})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    if finished:
        (run / "model").mkdir()
        (run / "model" / "config.json").write_text("{}")
        os.utime(run / "model" / "config.json", (mtime, mtime))
    return run


def test_default_model_is_the_newest_finished_default_run(tmp_path):
    assert find_default_model(tmp_path / "none") is None
    _write_run(tmp_path, "old", mtime=1000)
    newest = _write_run(tmp_path, "new", mtime=3000)
    _write_run(tmp_path, "r0", model={"recurrence": 0}, mtime=5000)  # another model: not the default job
    _write_run(tmp_path, "running", finished=False)
    assert find_default_model(tmp_path) == newest / "checkpoints" / "latest.pt"


def test_no_model_says_how_to_train_one(tmp_path, capsys):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    assert main(["explore", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no trained default-job model under" in err and "make demo" in err and "ccnet train" in err


def test_core_and_cli_work_without_gradio(tmp_path, model_folder):
    """With gradio and selenium unimportable, ccnet imports, the other commands run, and
    ccnet explore says which extra to install."""
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(SyntheticContextDataset("val", size=(64, 64)).render(0)[0]).save(image)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("gradio", "selenium"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        import ccnet, ccnet.viz, ccnet.viz.figure, ccnet.app, ccnet.cli
        from ccnet.cli import main
        assert main(["visualize-attention", {str(model_folder)!r}, {str(image)!r}, "--pixel", "5,60",
                     "--output", {str(tmp_path / "out")!r}]) == 0
        sys.exit(main(["explore", {str(model_folder)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "ccnet explore: error: ccnet explore needs gradio: pip install 'ccnet-pytorch[app]'" in result.stderr
    assert (tmp_path / "out" / "scene_attention.png").is_file()


def test_visualize_attention_writes_the_figures(tmp_path, model_folder, capsys):
    image = tmp_path / "scene.png"
    from PIL import Image

    scene = SyntheticContextDataset("val", size=(96, 80)).render(1)[0]
    Image.fromarray(scene).save(image)
    out = tmp_path / "out"
    assert main(["visualize-attention", str(model_folder), str(image), "--pixel", "10,70", "--pixel", "90,0",
                 "--output", str(out)]) == 0
    figure = np.asarray(Image.open(out / "scene_attention.png"))
    rows = [np.asarray(Image.open(out / f"scene_pixel{k}.png")) for k in range(2)]
    # One row per pixel: image, loop 1, loop 2, prediction side by side, each enlarged 4x (to >= 256 px).
    assert rows[0].shape[1] == 4 * (4 * 80) + 3 * 6 and rows[0].shape[0] == 26 + 4 * 96
    assert figure.shape[0] > 2 * rows[0].shape[0] and figure.shape[1] == rows[0].shape[1]
    np.testing.assert_array_equal(figure[: rows[0].shape[0]], rows[0])
    saved = np.load(out / "scene_attention.npz")
    assert saved["loops"].shape == (2, 2, 7, 6) and saved["pixels"].tolist() == [[10, 70], [90, 0]]
    np.testing.assert_allclose(saved["loops"].sum(axis=(-2, -1)), 1.0, rtol=1e-5)
    assert "2 pixel(s), R=2" in capsys.readouterr().out


def test_visualize_attention_of_a_video_model_on_an_image_is_its_2d_model(tmp_path, model_folder):
    from PIL import Image

    from ccnet.models import CCNet, CCNet3D

    video_folder = tmp_path / "video"
    CCNet3D.from_ccnet(CCNet.from_pretrained(model_folder)).save_pretrained(video_folder)
    image = tmp_path / "scene.png"
    Image.fromarray(SyntheticContextDataset("val", size=(96, 80)).render(1)[0]).save(image)
    for name, folder in (("2d", model_folder), ("3d", video_folder)):
        assert main(["visualize-attention", str(folder), str(image), "--pixel", "10,70", "--output",
                     str(tmp_path / name)]) == 0
    maps_2d, maps_3d = (np.load(tmp_path / name / "scene_attention.npz") for name in ("2d", "3d"))
    np.testing.assert_allclose(maps_3d["loops"], maps_2d["loops"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pixel", "200,0"], "pixel (200, 0) is outside the 96x80 input"),
        (["optim.lrr=1", "--pixel", "0,0"], "unknown config key 'optim.lrr'"),
    ],
)
def test_visualize_attention_errors_are_one_line(tmp_path, model_folder, argv, message, capsys):
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(SyntheticContextDataset("val", size=(96, 80)).render(1)[0]).save(image)
    code = main(["visualize-attention", str(model_folder), str(image), *argv, "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_bad_pixel_syntax_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["visualize-attention", "ck.pt", "im.png", "--pixel", "3;4", "--output", "o"])
    assert exit_info.value.code == 2
    assert "'3;4': expected y,x" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["visualize-attention", "explore"])
def test_every_option_is_explained(command, capsys):
    from ccnet.cli import build_parser

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "usage: ccnet " + command in capsys.readouterr().out
    subparser = build_parser()._subparsers._group_actions[0].choices[command]
    assert all(action.help for action in subparser._actions)


def test_a_model_without_attention_still_shows_predictions():
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    from ccnet.app.explorer import Explorer, build_app
    from ccnet.data.synthetic import SYNTHETIC_INFO
    from ccnet.models import CCNet

    model = CCNet(7, backbone="resnet18", recurrence=0, head_channels=16, aux=False, stem_widths=(8, 8, 16))
    explorer = Explorer(model, SYNTHETIC_INFO, (0, 0, 0), (1, 1, 1))
    analysis = explorer.analyse(SyntheticContextDataset("val", size=(64, 64)).render(0)[0])
    assert analysis.record is None and analysis.prediction.shape == (64, 64)
    assert explorer.attention_images(analysis, (3, 4)) == []
    assert "no attention loops" in explorer.describe(analysis, (3, 4))
    build_app(explorer)  # the page builds with no attention panels
