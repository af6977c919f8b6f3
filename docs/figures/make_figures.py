"""Regenerate the README's attention figures from the default job's model.

    .venv/bin/python docs/figures/make_figures.py [CHECKPOINT]     # or: make figures

Uses CHECKPOINT, else the newest finished default-job run under runs/ (trains one into runs/default first when
there is none: `ccnet train`, a few minutes on a CPU). Picks the first validation scene whose grey
objects share no row or column with the key marker and whose grey object the model gets right,
then writes

* docs/figures/attention.png: `ccnet visualize-attention` on that scene, for a pixel of the grey
  object (its class is given only by the distant key) and a pixel of a locally recognisable object;
* docs/figures/explorer.png: a screenshot of `ccnet explore` (headless Chromium) after loading the
  scene and clicking the grey object's pixel.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ccnet.cli import main
from ccnet.cli.common import model_from_checkpoint
from ccnet.cli.explore import find_default_model
from ccnet.data.synthetic import CONTEXT_CLASSES, LOCAL_CLASSES, SyntheticContextDataset
from ccnet.viz import record_attention

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "figures"


def default_model() -> Path:
    found = find_default_model(ROOT / "runs")
    if found is None:
        print("no trained default-job model under runs/: training one (ccnet train --output runs/default)")
        if main(["train", "--output", str(ROOT / "runs" / "default")]) != 0:
            sys.exit("training failed")
        found = find_default_model(ROOT / "runs")
    return found


def inner_pixel(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border (the middle of the largest blob)."""
    import cv2

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(y), int(x)


def pick_scene(checkpoint: Path):
    """``(index, image, grey pixel, local pixel)`` of the first suitable validation scene."""
    model, config, _ = model_from_checkpoint(str(checkpoint), [])
    dataset = SyntheticContextDataset("val", num_samples=config.data.synthetic_val_samples,
                                      size=tuple(config.data.synthetic_size), seed=config.seed)
    for index in range(len(dataset)):
        layout = dataset.layout(index)
        if layout["aligned"] or dataset.key_shares_line(index):
            continue
        image, label = dataset.render(index)
        ky, kx, k = layout["key"]
        grey = np.isin(label, CONTEXT_CLASSES)
        grey[ky:ky + k, kx:kx + k] = False
        local = np.isin(label, LOCAL_CLASSES)
        if grey.sum() < 400 or local.sum() < 200:
            continue
        grey_pixel, local_pixel = inner_pixel(grey), inner_pixel(local)
        x = dataset[index]["image"]
        prediction = record_attention(model, x).logits[0].argmax(0).numpy()
        if prediction[grey_pixel] == label[grey_pixel] and prediction[local_pixel] == label[local_pixel]:
            return index, image, grey_pixel, local_pixel
    sys.exit("no validation scene fits (is the model trained?)")


def screenshot(checkpoint: Path, index: int, pixel: tuple[int, int], path: Path) -> None:
    sys.path.insert(0, str(ROOT))  # the Selenium helpers live with the browser test, outside the package
    from tests.app.browser import ExplorerPage, ExplorerServer, headless_chromium

    from ccnet.viz.figure import display_scale

    shown = checkpoint.resolve().relative_to(ROOT) if checkpoint.resolve().is_relative_to(ROOT) else checkpoint
    with ExplorerServer([shown], cwd=ROOT) as server:
        driver = headless_chromium(window=(1300, 1150))
        try:
            page = ExplorerPage(driver, server.url)
            page.open()
            page.load_scene(index)
            page.click_pixel("prediction", *pixel, scale=display_scale((192, 192)))
            page.wait_image("attention-1")
            page.wait_image("attention-2")
            driver.save_screenshot(str(path))
        finally:
            driver.quit()


def make_figures(checkpoint: Path | None = None) -> None:
    checkpoint = checkpoint or default_model()
    print(f"model: {checkpoint}")
    index, image, grey_pixel, local_pixel = pick_scene(checkpoint)
    print(f"scene: val {index}, grey-object pixel {grey_pixel}, local-object pixel {local_pixel}")
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / f"val_{index:06d}.png"
        Image.fromarray(image).save(scene)
        pixels = [f"{grey_pixel[0]},{grey_pixel[1]}", f"{local_pixel[0]},{local_pixel[1]}"]
        argv = ["visualize-attention", str(checkpoint), str(scene), "--output", tmp]
        if main([*argv, *(a for p in pixels for a in ("--pixel", p))]) != 0:
            sys.exit("visualize-attention failed")
        # 256 colours for the README (a third of the size; the command's own PNG is exact).
        figure = Image.open(Path(tmp) / f"{scene.stem}_attention.png").convert("RGB")
        figure.quantize(256, method=Image.Quantize.MEDIANCUT).save(OUT / "attention.png", optimize=True)
    screenshot(checkpoint, index, grey_pixel, OUT / "explorer.png")
    print(f"wrote {OUT / 'attention.png'} and {OUT / 'explorer.png'}")


if __name__ == "__main__":
    make_figures(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
