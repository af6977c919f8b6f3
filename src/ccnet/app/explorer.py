"""``ccnet explore``: a local web page to look at a model's predictions and attention.

Open an image (upload, one of the images given on the command line, or a synthetic scene), see
the prediction overlay with its class names and colours, click a pixel to see where its
attention looks after each loop. Gradio, on the CPU, offline: analytics off, no share link, the
theme's fonts served by the app itself, bound to 127.0.0.1 unless told otherwise.

Each image is run through the model once (`ccnet.viz.record_attention` keeps every loop's
weights); a click only composes the maps of one pixel, which takes milliseconds.
"""

from __future__ import annotations

import html
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ccnet.data.info import DatasetInfo
from ccnet.data.io import read_image
from ccnet.data.transforms import to_tensors
from ccnet.engine.predict import blend
from ccnet.viz import AttentionRecord, record_attention
from ccnet.viz.figure import display_scale, heat_overlay, mark_pixel, upsample_map

# Before gradio is imported anywhere: no usage statistics, no version check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # after the environment above is set

__all__ = ["Explorer", "build_app", "free_port", "launch"]

CSS = """
.attention img, .prediction img { image-rendering: pixelated; }
.legend span.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #333;
                      margin: 0 0.3em 0 0.8em; vertical-align: middle; }
"""


@dataclass
class Analysis:
    """One analysed image: the (possibly downscaled) RGB image, its prediction and the attention
    record of the forward pass (None for a model without attention loops)."""

    image: np.ndarray
    prediction: np.ndarray
    probabilities: np.ndarray
    record: AttentionRecord | None


class Explorer:
    """The model side of the page: analyse an image, draw the prediction and a pixel's attention.

    ``max_side``: larger images are downscaled (area interpolation) so that their longer side is
    at most this many pixels, to keep a CPU forward pass interactive.
    """

    def __init__(self, model: nn.Module, info: DatasetInfo, mean: Sequence[float], std: Sequence[float],
                 *, max_side: int = 512, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_side = max_side
        self.recurrence = int(getattr(model, "recurrence", 0))
        self.align_corners = bool(getattr(model, "align_corners", False))

    def analyse(self, image: np.ndarray) -> Analysis:
        image = _as_rgb(image)
        longer = max(image.shape[:2])
        if longer > self.max_side:
            factor = self.max_side / longer
            size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        x, _ = to_tensors(image, np.zeros(image.shape[:2], np.uint8), self.mean, self.std)
        if self.recurrence > 0:
            record = record_attention(self.model, x.to(self.device))
            logits = record.logits
        else:
            record = None
            with torch.no_grad():
                logits = self.model(x[None].to(self.device))["out"]
        probabilities = torch.softmax(logits[0].float(), dim=0)
        return Analysis(image, probabilities.argmax(0).cpu().numpy(), probabilities.cpu().numpy(), record)

    def prediction_image(self, analysis: Analysis, pixel: tuple[int, int] | None = None) -> np.ndarray:
        overlay = blend(analysis.image, self.info.colorize(analysis.prediction))
        scale = display_scale(overlay.shape[:2])
        overlay = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        return overlay if pixel is None else mark_pixel(overlay, pixel, scale)

    def attention_images(self, analysis: Analysis, pixel: tuple[int, int]) -> list[np.ndarray]:
        """The pixel's effective attention map after each loop, over the image (none without loops)."""
        if analysis.record is None:
            return []
        maps = analysis.record.maps([pixel])
        size = analysis.image.shape[:2]
        scale = display_scale(size)
        images = []
        for r in range(maps.recurrence):
            heat = upsample_map(maps.loops[0, r].cpu(), size, self.align_corners)
            overlay = heat_overlay(analysis.image, heat)
            overlay = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            images.append(mark_pixel(overlay, pixel, scale))
        return images

    def describe(self, analysis: Analysis, pixel: tuple[int, int]) -> str:
        y, x = pixel
        label = int(analysis.prediction[y, x])
        p = float(analysis.probabilities[label, y, x])
        text = f"Pixel (y={y}, x={x}): predicted **{self.info.class_names[label]}** ({100 * p:.1f}%)."
        if analysis.record is None:
            return text + " This model has no attention loops."
        (cell,) = analysis.record.positions([pixel])
        h, w = analysis.record.feature_size
        return (f"{text} It falls on feature cell {cell} of {h}x{w}. Loop 1 attends to the cell's row and "
                "column; each further map is composed with the loops before it (red = the largest share).")

    def legend_html(self, analysis: Analysis | None = None) -> str:
        """Class colours and names; with an analysis, the share of the image predicted as each."""
        parts = []
        counts = None if analysis is None else np.bincount(analysis.prediction.ravel(),
                                                           minlength=self.info.num_classes)
        for c, (name, colour) in enumerate(zip(self.info.class_names, self.info.palette, strict=True)):
            share = "" if counts is None else f" {100 * counts[c] / counts.sum():.0f}%"
            parts.append(f'<span class="swatch" style="background: rgb{tuple(int(v) for v in colour)}"></span>'
                         f"{html.escape(name)}{share}")
        return f'<div class="legend">{"".join(parts)}</div>'


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise gr.Error(f"expected an RGB image, got an array of shape {image.shape}")
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def build_app(
    explorer: Explorer,
    *,
    images: Sequence[Path] = (),
    synthetic: Callable[[int], np.ndarray] | None = None,
    synthetic_count: int = 0,
    title: str = "CCNet attention explorer",
    subtitle: str = "",
) -> gr.Blocks:
    """The page. ``images``: files to pick from; ``synthetic(i)``: the i-th synthetic scene
    (``synthetic_count`` of them), or None for no synthetic source."""
    images = [Path(p) for p in images]
    by_name = {p.name: p for p in images}
    loops = explorer.recurrence

    def show(image: np.ndarray | None):
        if image is None:
            return None, None, explorer.legend_html(), "Open an image.", *([None] * loops)
        analysis = explorer.analyse(image)
        h, w = analysis.image.shape[:2]
        note = f"{w}x{h} image; click a pixel of the prediction to see its attention after each loop."
        return (analysis, explorer.prediction_image(analysis), explorer.legend_html(analysis), note,
                *([None] * loops))

    def pick(name: str | None):
        if not name:
            return show(None)
        return show(read_image(by_name[name]))

    def scene(index: float | None):
        if synthetic is None:
            raise gr.Error("no synthetic dataset for this model")
        index = int(index or 0)
        if not 0 <= index < synthetic_count:
            raise gr.Error(f"scene index must be in 0..{synthetic_count - 1}, got {index}")
        return show(synthetic(index))

    def click(analysis: Analysis | None, event: gr.SelectData):
        if analysis is None:
            raise gr.Error("open an image first")
        scale = display_scale(analysis.image.shape[:2])
        x, y = (int(v) // scale for v in event.index)
        h, w = analysis.image.shape[:2]
        pixel = (min(max(y, 0), h - 1), min(max(x, 0), w - 1))
        return (explorer.prediction_image(analysis, pixel), explorer.describe(analysis, pixel),
                *explorer.attention_images(analysis, pixel))

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {html.escape(title)}\n{subtitle}")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.Image(label="Upload an image", sources=["upload"], type="numpy", height=220,
                                  elem_id="upload")
                given = gr.Dropdown(choices=list(by_name), value=None, label="...or pick one of the given images",
                                    visible=bool(images), elem_id="given")
                with gr.Row(visible=synthetic is not None):
                    index = gr.Number(value=0, precision=0, minimum=0, label="...or a synthetic scene",
                                      elem_id="scene-index", scale=2)
                    load = gr.Button("Load scene", elem_id="load-scene", scale=1)
            with gr.Column(scale=2):
                prediction = gr.Image(label="Prediction (click a pixel)", interactive=False, format="png",
                                      elem_id="prediction", elem_classes="prediction", buttons=["download"])
                legend = gr.HTML(explorer.legend_html(), elem_id="legend")
                note = gr.Markdown("Open an image.", elem_id="note")
        with gr.Row():
            attention = [
                gr.Image(label=_attention_label(r),
                         interactive=False, format="png", elem_id=f"attention-{r + 1}", elem_classes="attention",
                         buttons=["download"])
                for r in range(loops)
            ]
        outputs = [state, prediction, legend, note, *attention]
        upload.upload(show, inputs=upload, outputs=outputs)
        given.change(pick, inputs=given, outputs=outputs)
        load.click(scene, inputs=index, outputs=outputs)
        prediction.select(click, inputs=state, outputs=[prediction, note, *attention])
    return app


def _attention_label(r: int) -> str:
    if r == 0:
        return "Attention after loop 1 (row and column)"
    before = "loop 1" if r == 1 else f"loops 1-{r}"
    return f"Attention after loop {r + 1} (composed with {before})"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the system's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           block: bool = True) -> str:
    """Serve ``app`` on ``host:port`` (no share link, no server-side rendering, no MCP server);
    returns its URL. ``port=0``: a port that is free now. ``block=False`` returns at once with the
    server running in a thread."""
    if port == 0:
        port = free_port(host)
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, inbrowser=open_browser,
                           prevent_thread_lock=True, quiet=True, ssr_mode=False, mcp_server=False, pwa=False,
                           enable_monitoring=False, footer_links=[], css=CSS, show_error=True)
    if block:
        app.block_thread()
    return url
