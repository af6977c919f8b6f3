"""ccnet explore in a real browser: the command serves the page on a free local port, headless
Chromium uploads an image, picks a given one, loads a synthetic scene, clicks a pixel, and the
prediction and attention images that appear are the ones the model gives. The page must load
nothing from outside 127.0.0.1. A screenshot is kept in test-artifacts/explorer.png."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.app.browser import ExplorerPage, ExplorerServer, find_chromium, headless_chromium

from ccnet.cli.common import model_from_checkpoint
from ccnet.data.synthetic import SyntheticContextDataset

pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed: pip install -e '.[dev]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium and chromedriver not found (Debian: apt-get install chromium chromium-driver)",
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _png(page, elem_id):
    return np.asarray(Image.open(io.BytesIO(page.fetch(page.image_src(elem_id)))).convert("RGB"))


def _close(shown, expected):
    """Same picture up to rounding: the server and this process may sum in other orders."""
    assert shown.shape == expected.shape
    differing = np.abs(shown.astype(int) - expected.astype(int)).max(-1) > 2
    assert differing.mean() < 0.01, f"{differing.mean():.1%} of the pixels differ"


def test_upload_pick_click_and_see_prediction_and_attention(tmp_path, model_folder):
    from ccnet.app.explorer import Explorer

    uploaded, given = tmp_path / "uploaded.png", tmp_path / "given.png"
    Image.fromarray(SyntheticContextDataset("val", size=(160, 192)).render(5)[0]).save(uploaded)
    Image.fromarray(SyntheticContextDataset("val", size=(192, 192)).render(6)[0]).save(given)
    model, config, info = model_from_checkpoint(str(model_folder), [])
    explorer = Explorer(model, info, config.data.mean, config.data.std)

    with ExplorerServer([model_folder, given]) as server:
        driver = headless_chromium()
        try:
            page = ExplorerPage(driver, server.url)
            page.open()
            assert page.image_src("prediction") is None

            page.upload(uploaded)
            analysis = explorer.analyse(np.asarray(Image.open(uploaded).convert("RGB")))
            _close(_png(page, "prediction"), explorer.prediction_image(analysis))
            assert page.image_src("attention-1") is None and page.image_src("attention-2") is None
            assert "context_red" in page.text("legend")  # class names with their colours

            page.click_pixel("prediction", 120, 30, scale=2)
            page.wait_image("attention-1")
            page.wait_image("attention-2")
            y, x = map(int, re.search(r"Pixel \(y=(\d+), x=(\d+)\)", page.text("note")).groups())
            assert abs(y - 120) <= 1 and abs(x - 30) <= 1, (y, x)
            for r, expected in enumerate(explorer.attention_images(analysis, (y, x)), start=1):
                _close(_png(page, f"attention-{r}"), expected)
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "explorer.png"))

            page.pick("given.png")
            assert page.image_src("attention-1") is None  # a new image clears the old pixel's maps
            page.load_scene(2)
            scene = SyntheticContextDataset("val", size=(192, 192), num_samples=64).render(2)[0]
            _close(_png(page, "prediction"), explorer.prediction_image(explorer.analyse(scene)))

            outside = [url for url in page.resources() if not url.startswith(server.url)]
            assert not outside, f"the page loaded resources from elsewhere: {outside[:5]}"
        finally:
            driver.quit()
    assert (ARTIFACTS / "explorer.png").stat().st_size > 10_000
