"""``ccnet explore``: a local web page (Gradio) to look at predictions and attention maps.

Needs the ``app`` extra (``pip install 'ccnet-pytorch[app]'``); the rest of ccnet does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccnet.cli.common import model_from_checkpoint
from ccnet.errors import InputError, MissingExtraError, UserFileNotFoundError

EPILOG = """examples:
  ccnet explore                                     # the newest default-job model under runs/
  ccnet explore runs/default/checkpoints/latest.pt photos/ street.png
  ccnet explore models/official/ --port 8000 --max-side 769

The first argument is the model when it is a .pt/.pth file or a model folder (config.json inside);
everything else is images (files, folders, glob patterns) to pick from on the page; a file that is
neither is refused. Without a model, the newest default-job model under --runs is served (named
on the first line). A video model (CCNet3D) is shown on single images as its 2D model, what it
computes on a one-frame clip.
"""

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
NO_MODEL = ("no trained default-job model under {runs}/ (a run of `ccnet train` with the default model that "
            "finished); train one with `make demo` or `ccnet train` (a few minutes on a CPU), or give a checkpoint")


def is_model_path(path: str) -> bool:
    """A training checkpoint file or a saved model folder."""
    p = Path(path)
    return (p.suffix in CHECKPOINT_SUFFIXES and p.is_file()) or (p.is_dir() and (p / "config.json").is_file())


def find_default_model(runs: str | Path = "runs") -> Path | None:
    """The newest finished run of the default job under ``runs``: a run folder whose
    ``config.yaml`` has the default model and dataset (``ccnet train`` with no config, any seed
    or schedule) and whose training finished (``model/`` written). Returns its checkpoint
    (``checkpoints/latest.pt``), or its model folder when the checkpoint is gone; None if none."""
    import yaml

    from ccnet.config import Config, read_yaml

    default = Config().to_dict()
    found = []
    for config_path in Path(runs).glob("*/config.yaml"):
        run = config_path.parent
        try:
            config = read_yaml(config_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        same_job = (isinstance(config, dict) and config.get("model") == default["model"]
                    and (config.get("data") or {}).get("dataset") == default["data"]["dataset"])
        if not same_job or not (run / "model" / "config.json").is_file():
            continue
        checkpoint = run / "checkpoints" / "latest.pt"
        path = checkpoint if checkpoint.is_file() else run / "model"
        found.append(((run / "model" / "config.json").stat().st_mtime, path))
    return max(found)[1] if found else None


def choose_inputs(items: list[str], runs: str | Path) -> tuple[str, list[str], bool]:
    """``(checkpoint, image items, found)`` from the command line's ``[CHECKPOINT] [IMAGES...]``
    (overrides already removed): the first item when it is a model, else the newest default-job
    model under ``runs`` (``found``). A file that is neither a model nor an image is refused
    here, before anything is loaded."""
    from ccnet.engine.predict import IMAGE_EXTENSIONS

    items = list(items)
    checkpoint = items.pop(0) if items and (is_model_path(items[0]) or Path(items[0]).suffix in CHECKPOINT_SUFFIXES) \
        else None
    for position, item in enumerate(items):
        path = Path(item).expanduser()
        if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            image = f"an image ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            if checkpoint is None and position == 0:
                raise InputError(f"{item}: neither a model (a .pt/.pth/.ckpt checkpoint or a model folder with "
                                 f"config.json) nor {image}")
            raise InputError(f"{item}: not {image}")
    found = checkpoint is None
    if found:
        newest = find_default_model(runs)
        if newest is None:
            raise UserFileNotFoundError(NO_MODEL.format(runs=runs))
        checkpoint = str(newest)
    return checkpoint, items, found


def image_model(model: Any) -> tuple[Any, str]:
    """The model the page runs on single images, and a note on it: a video model (CCNet3D) as its
    2D model (what it computes on a one-frame clip, as ``ccnet visualize-attention`` shows it)."""
    from ccnet.models import CCNet3D

    if isinstance(model, CCNet3D):
        return model.to_ccnet(), "a video model (CCNet3D) shown on single images: its 2D model, a one-frame clip"
    return model, ""


def synthetic_scenes(config: Any) -> tuple[Callable[[int], Any] | None, int]:
    """``(scene(i), count)``: the validation scenes of a synthetic config (for a video model, the
    frames of its validation clips one by one), or ``(None, 0)``."""
    data = config.data
    if data.dataset == "synthetic":
        from ccnet.data.synthetic import SyntheticContextDataset

        dataset = SyntheticContextDataset("val", num_samples=data.synthetic_val_samples,
                                          size=tuple(data.synthetic_size), seed=config.seed)
        return (lambda i: dataset.render(i)[0]), len(dataset)
    if data.dataset == "synthetic_video":
        from ccnet.data.synthetic_video import SyntheticVideoDataset

        t = config.video.clip_length
        clips = SyntheticVideoDataset("val", num_samples=data.synthetic_val_samples, size=tuple(data.synthetic_size),
                                      clip_length=t, seed=config.seed)
        return (lambda i: clips.render(i // t)[0][i % t]), len(clips) * t
    return None, 0


def run(args: argparse.Namespace) -> int:
    try:
        from ccnet.app.explorer import Explorer, build_app, launch
    except ImportError as error:
        missing = getattr(error, "name", None) or "gradio"
        raise MissingExtraError(f"ccnet explore needs {missing}: pip install 'ccnet-pytorch[app]'") from error
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs

    items = list(args.items)
    overrides = [i for i in items if "=" in i and not Path(i).exists()]
    checkpoint, image_items, found = choose_inputs([i for i in items if i not in overrides], args.runs)
    if found:
        print(f"ccnet explore: serving the newest default-job model under {args.runs}/: {checkpoint}", flush=True)
    images = collect_inputs(image_items) if image_items else []

    model, config, info = model_from_checkpoint(checkpoint, overrides)
    model, note = image_model(model)
    if note:
        print(f"note: {checkpoint} is {note}")
    device = resolve_device(args.device or "cpu")
    explorer = Explorer(model, info, config.data.mean, config.data.std, max_side=args.max_side, device=device)
    scene, scenes = synthetic_scenes(config)
    if explorer.recurrence < 1:
        print("note: this model has no attention loops (recurrence 0): only predictions are shown")
    subtitle = (f"Model: `{checkpoint}` ({config.model.backbone}, R={explorer.recurrence}, "
                f"{info.num_classes} classes: {info.name}{'; ' + note if note else ''})")
    app = build_app(explorer, images=images, synthetic=scene, synthetic_count=scenes, subtitle=subtitle)
    url = launch(app, host=args.host, port=args.port, open_browser=args.open, block=False)
    print(f"ccnet explore: {checkpoint} on {url} (Ctrl+C to stop)", flush=True)
    app.block_thread()
    return 0


def port_number(text: str) -> int:
    """A TCP port, 0 meaning any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1..65535, or 0 for any free port")
    return port


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "explore", help="a local web page to look at predictions and attention maps (needs the [app] extra)",
        description="Serve a local page (Gradio, CPU, offline): open an image (upload, one of IMAGES, or a synthetic "
                    "scene), see the prediction with class names and colours, click a pixel to see its attention "
                    "after each loop. KEY=VALUE overrides apply to the checkpoint's config.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CHECKPOINT] [IMAGES...]",
                        help="a checkpoint or model folder (default: the newest default-job model under --runs), "
                             "then images, folders or glob patterns to pick from")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=port_number, default=7860,
                        help="port (default: %(default)s; 0: any free port, the URL served is printed)")
    parser.add_argument("--max-side", type=int, default=512,
                        help="downscale larger images to this longer side before the model (default: %(default)s)")
    parser.add_argument("--runs", default="runs", help="where to look for a trained model (default: %(default)s)")
    parser.add_argument("--device", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.set_defaults(func=run)
