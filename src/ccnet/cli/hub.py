"""``ccnet push-to-hub``: upload a ccnet model folder and its model card to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ccnet.errors import InputError


def run(args: argparse.Namespace) -> int:
    from ccnet.interop import load_pretrained
    from ccnet.models.hub import push_folder_to_hub

    folder = Path(args.model_dir)
    load_pretrained(folder, format="ccnet")  # refuse a folder that does not load, before any upload
    metrics = None
    if args.metrics is not None:
        try:
            metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"--metrics {args.metrics}: not valid JSON ({error})") from None
        if not isinstance(metrics, dict):
            raise InputError(f"--metrics {args.metrics}: expected a JSON object of metrics")
    info = push_folder_to_hub(folder, args.repo_id, metrics=metrics, revision=args.revision,
                              private=args.private or None, token=args.token, commit_message=args.message)
    print(f"pushed {folder} to {args.repo_id} ({getattr(info, 'commit_url', None) or 'done'}); "
          f"load it with ccnet.load_pretrained({args.repo_id!r})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    push = sub.add_parser("push-to-hub", help="upload a ccnet model folder to the Hugging Face Hub, with a model card",
                          description="Upload model.safetensors and config.json of MODEL_DIR and a generated "
                                      "README.md model card (metadata, classes, the run's metrics.json next to "
                                      "MODEL_DIR if present, the config, how to load it) to REPO_ID; the repo is "
                                      "created if missing. Needs the hub extra: pip install 'ccnet-pytorch[hub]'; "
                                      "log in first with `hf auth login` or pass --token.")
    push.add_argument("model_dir", help="a ccnet model folder (e.g. runs/NAME/model)")
    push.add_argument("repo_id", help="the Hub repo, org/name")
    push.add_argument("--revision", help="the branch to commit to (default: main)")
    push.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    push.add_argument("--token", help="a Hub token (default: the one of `hf auth login` or HF_TOKEN)")
    push.add_argument("--message", help="the commit message (default: 'Upload ccnet model')")
    push.add_argument("--metrics", help="a metrics.json for the card (default: the one next to MODEL_DIR)")
    push.set_defaults(func=run)
