"""ccnet explore's start: a video model is served as its 2D model (what visualize-attention shows),
``--port 0`` serves on a free port and prints that URL, a file that is neither a model nor an
image is refused, and the model picked under runs/ is named."""

import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ccnet.cli import main
from ccnet.cli.common import model_from_checkpoint
from ccnet.cli.explore import choose_inputs, image_model, synthetic_scenes
from ccnet.config import Config, load_config
from ccnet.data.synthetic import SyntheticContextDataset
from ccnet.models import CCNet, CCNet3D
from ccnet.viz import attention_maps


@pytest.fixture
def video_folder(tmp_path, model_folder):
    folder = tmp_path / "video"
    CCNet3D.from_ccnet(CCNet.from_pretrained(model_folder)).save_pretrained(folder)
    return folder


def test_a_video_model_is_explored_as_its_2d_model(video_folder, model_folder):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    from ccnet.app.explorer import Explorer, build_app

    model, config, info = model_from_checkpoint(str(video_folder), [])
    assert isinstance(model, CCNet3D)
    served, note = image_model(model)
    assert type(served) is CCNet and "video model (CCNet3D)" in note and "one-frame clip" in note
    explorer = Explorer(served, info, config.data.mean, config.data.std)
    image = SyntheticContextDataset("val", size=(96, 80)).render(2)[0]
    analysis = explorer.analyse(image)  # failed before: "attention maps take one input (C, T, H, W)"
    pixel = (30, 50)
    shown = explorer.attention_images(analysis, pixel)
    assert len(shown) == 2
    # The same maps as the 2D model the video model was made from, and as its one-frame clip.
    x = (torch.from_numpy(image).permute(2, 0, 1).float() - torch.tensor(config.data.mean).view(3, 1, 1)) \
        / torch.tensor(config.data.std).view(3, 1, 1)
    expected = attention_maps(CCNet.from_pretrained(model_folder).eval(), x, [pixel]).loops
    clip = attention_maps(model, x[:, None], [(0, *pixel)]).loops[:, :, 0]
    got = analysis.record.maps([pixel]).loops
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got, clip, rtol=1e-5, atol=1e-7)
    build_app(explorer)


def test_a_synthetic_video_config_offers_the_frames_of_its_clips():
    config = load_config(None, ["data.dataset=synthetic_video", "data.synthetic_size=[32, 32]",
                                "data.synthetic_val_samples=3", "video.clip_length=2"])
    scene, count = synthetic_scenes(config)
    assert count == 6 and scene(5).shape == (32, 32, 3)
    assert synthetic_scenes(load_config(None, ["data.dataset=camvid"]))[0] is None


def test_a_file_that_is_neither_a_model_nor_an_image_is_refused(tmp_path, model_folder, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    for argv, message in (([str(notes)], "notes.txt: neither a model (a .pt/.pth/.ckpt checkpoint or a model folder "
                                         "with config.json) nor an image (.bmp, .jpeg, .jpg, .png"),
                          ([str(model_folder), str(notes)], "notes.txt: not an image (.bmp")):
        assert main(["explore", *argv, "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    image = tmp_path / "scene.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert choose_inputs([str(model_folder), str(image), str(tmp_path)], tmp_path) == (
        str(model_folder), [str(image), str(tmp_path)], False)


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_port_outside_the_range_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explore", "--port", port])
    assert exit_info.value.code == 2
    assert "a port is 1..65535, or 0 for any free port" in capsys.readouterr().err


def _finished_default_run(runs, model_folder):
    run = runs / "default-run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(Config().to_dict()))
    CCNet.from_pretrained(model_folder).save_pretrained(run / "model")
    return run / "model"


def test_port_0_serves_on_a_free_port_and_names_the_model_found_under_runs(tmp_path, model_folder):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    model = _finished_default_run(tmp_path / "runs", model_folder)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ccnet.cli", "explore", "--runs", str(tmp_path / "runs"),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines, deadline = [], time.monotonic() + 180
        while time.monotonic() < deadline and not any(" on http://" in line for line in lines):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
        output = "".join(lines)
        assert lines[0].strip() == f"ccnet explore: serving the newest default-job model under {tmp_path / 'runs'}/: " \
                                   f"{model}", output
        served = next(line for line in lines if " on http://" in line)
        url = served.split(" on ", 1)[1].split()[0]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert port != 0 and served.startswith(f"ccnet explore: {model} on http://127.0.0.1:{port}/"), output
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"CCNet attention explorer" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
