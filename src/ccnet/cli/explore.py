"""``ccnet explore``: a local web page (Gradio) to look at predictions and attention maps.

Needs the ``app`` extra (``pip install 'ccnet-pytorch[app]'``); the rest of ccnet does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ccnet.cli.common import model_from_checkpoint

EPILOG = """examples:
  ccnet explore                                     # the newest default-job model under runs/
  ccnet explore runs/default/checkpoints/latest.pt photos/ street.png
  ccnet explore models/official/ --port 8000 --max-side 769

The first argument is the model when it is a .pt/.pth file or a model folder (config.json inside);
everything else is images (files, folders, glob patterns) to pick from on the page.
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


def run(args: argparse.Namespace) -> int:
    try:
        from ccnet.app.explorer import Explorer, build_app, launch
    except ImportError as error:
        missing = getattr(error, "name", None) or "gradio"
        raise OSError(f"ccnet explore needs {missing}: pip install 'ccnet-pytorch[app]'") from error
    from ccnet.data.synthetic import SyntheticContextDataset
    from ccnet.engine.distributed import resolve_device
    from ccnet.engine.predict import collect_inputs

    items = list(args.items)
    overrides = [i for i in items if "=" in i and not Path(i).exists()]
    items = [i for i in items if i not in overrides]
    if items and (is_model_path(items[0]) or Path(items[0]).suffix in CHECKPOINT_SUFFIXES):
        checkpoint = items.pop(0)
    else:
        found = find_default_model(args.runs)
        if found is None:
            raise FileNotFoundError(NO_MODEL.format(runs=args.runs))
        checkpoint = str(found)
    images = collect_inputs(items) if items else []

    model, config, info = model_from_checkpoint(checkpoint, overrides)
    device = resolve_device(args.device or "cpu")
    explorer = Explorer(model, info, config.data.mean, config.data.std, max_side=args.max_side, device=device)
    scene, scenes = None, 0
    if config.data.dataset == "synthetic":
        dataset = SyntheticContextDataset("val", num_samples=config.data.synthetic_val_samples,
                                          size=tuple(config.data.synthetic_size), seed=config.seed)
        scene, scenes = (lambda i: dataset.render(i)[0]), len(dataset)
    if explorer.recurrence < 1:
        print("note: this model has no attention loops (recurrence 0): only predictions are shown")
    subtitle = (f"Model: `{checkpoint}` ({config.model.backbone}, R={explorer.recurrence}, "
                f"{info.num_classes} classes: {info.name})")
    app = build_app(explorer, images=images, synthetic=scene, synthetic_count=scenes, subtitle=subtitle)
    print(f"ccnet explore: {checkpoint} on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(app, host=args.host, port=args.port, open_browser=args.open)
    return 0


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
    parser.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=512,
                        help="downscale larger images to this longer side before the model (default: %(default)s)")
    parser.add_argument("--runs", default="runs", help="where to look for a trained model (default: %(default)s)")
    parser.add_argument("--device", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.set_defaults(func=run)
