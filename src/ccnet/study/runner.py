"""Runs the study one training run at a time, resumably.

Layout of a study folder::

    DIR/study.json                   settings of the study (size, iterations, batch, ...)
    DIR/cost.json                    per variant: step time, peak memory, head GFLOPs
    DIR/runs/<variant>/seed<N>/      one run: config.yaml, log.jsonl, train.log, metrics.json,
                                     status.json, checkpoints/latest.pt, model/, tensorboard/
    DIR/report.md, DIR/*.png         the report (`ccnet.study.report`)

A run is finished when its ``status.json`` says ``done`` (with ``metrics.json`` written) or
``diverged`` (a non-finite loss: a result, kept, not retried). Anything else is started, or
resumed from ``checkpoints/latest.pt`` exactly where it stopped; a run that raised an error is
retried on the next invocation. A finished run whose stored config differs from what the study
asks for now is refused, not silently mixed in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import torch
import yaml

from ccnet.config import Config, config_from_dict, flatten_keys
from ccnet.errors import InputError
from ccnet.files import atomic_write_text
from ccnet.study.plan import StudySettings, run_config

logger = logging.getLogger(__name__)

STATUS_NAME = "status.json"
FINISHED = ("done", "diverged")


def run_dir(output: Path, variant: str, seed: int) -> Path:
    return Path(output) / "runs" / variant / f"seed{seed}"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); delete it to redo") from None


def run_status(path: Path) -> str:
    """``done``, ``diverged``, ``failed`` (an error, retried), ``partial`` (a checkpoint to resume
    from) or ``new``."""
    status = read_json(path / STATUS_NAME) or {}
    state = status.get("status")
    if state == "done" and (path / "metrics.json").is_file():
        return "done"
    if state in ("diverged", "failed"):
        return state
    return "partial" if (path / "checkpoints" / "latest.pt").is_file() else "new"



def check_same_config(path: Path, config: Config) -> None:
    """A run folder may only continue (or count as) the run the study asks for now."""
    stored_path = path / "config.yaml"
    if not stored_path.is_file():
        return
    stored = config_from_dict(yaml.safe_load(stored_path.read_text()) or {})  # fills keys added since
    theirs, ours = flatten_keys(stored.to_dict()), flatten_keys(config.to_dict())
    for key, value in ours.items():
        if theirs.get(key) != value:
            raise InputError(
                f"{stored_path}: this run was trained with {key}={theirs.get(key)!r} but the study now asks for "
                f"{value!r}; use another --output (or delete the folder to retrain it)"
            )


def _message(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


@contextlib.contextmanager
def _package_log_to(stream: IO[str]) -> Iterator[None]:
    """Send ccnet's log records (INFO and up) to ``stream`` only, for the duration: a run's
    ``train.log`` holds its trainer's messages whether or not the caller configured logging."""
    package = logging.getLogger("ccnet")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = package.level, package.propagate
    package.addHandler(handler)
    package.propagate = False
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        package.propagate = propagate


def train_one(config: Config, path: Path) -> dict[str, Any]:
    """Train (or resume) one run in ``path``; its console output goes to ``path/train.log``.
    Returns the status written to ``status.json``."""
    from ccnet.engine.trainer import Trainer

    path.mkdir(parents=True, exist_ok=True)
    (path / STATUS_NAME).unlink(missing_ok=True)  # a failed run is retried from scratch or its checkpoint
    start = time.perf_counter()
    status: dict[str, Any] = {"status": "done"}
    with (open(path / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log),
          _package_log_to(log)):
        try:
            result = Trainer(config, output_dir=path, resume="auto", progress=False).fit()
            status["iteration"] = result.iteration
        except FloatingPointError as error:  # non-finite loss: the run diverged
            status = {"status": "diverged", "error": _message(error)}
        except Exception as error:
            traceback.print_exc(file=log)
            status = {"status": "failed", "error": f"{type(error).__name__}: {_message(error)}"}
    status["wall_s_this_invocation"] = time.perf_counter() - start
    status["threads"] = torch.get_num_threads()  # float reduction order, and so the trajectory, depends on it
    atomic_write_text(path / STATUS_NAME, json.dumps(status, indent=2))
    return status


def write_settings(output: Path, settings: StudySettings, command: str) -> None:
    """Record the study's settings, refusing a folder made with other settings."""
    path = output / "study.json"
    ours = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items() if k != "seeds"}
    stored = read_json(path)
    if stored is not None:
        for key, value in ours.items():
            if stored.get("settings", {}).get(key) != value:
                raise InputError(f"{path}: this study was made with {key}={stored['settings'].get(key)!r}, "
                                 f"not {value!r}; use another --output")
    seeds = sorted(set(stored.get("seeds", []) if stored else []) | set(settings.seeds))
    # every command that trained into the folder (a study may be split over several, e.g. by --only)
    commands = (stored.get("commands") or [stored["command"]]) if stored and stored.get("command") else []
    commands = [*dict.fromkeys([*commands, command])]
    record = {"settings": ours, "seeds": seeds, "command": command, "commands": commands,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2))


def run_study(
    output: Path,
    variants: list[str],
    settings: StudySettings,
    runs: list[tuple[str, int]] | None = None,
) -> dict[tuple[str, int], str]:
    """Train every (variant, seed) not finished yet, one at a time (``runs``, in that order; by
    default every variant on ``settings.seeds``, seed-major). Returns the status of each."""
    plan = runs if runs is not None else [(variant, seed) for seed in settings.seeds for variant in variants]
    configs = {(v, s): run_config(v, s, settings) for v, s in plan}
    for (variant, seed), config in configs.items():  # refuse mismatches before spending hours
        check_same_config(run_dir(output, variant, seed), config)
    statuses: dict[tuple[str, int], str] = {}
    for number, (variant, seed) in enumerate(plan, 1):
        path = run_dir(output, variant, seed)
        state = run_status(path)
        prefix = f"[{number}/{len(plan)}] {variant} seed {seed}"
        if state in FINISHED:
            logger.info(f"{prefix}: {state}, kept")
            statuses[variant, seed] = state
            _probe(path, configs[variant, seed], state)
            continue
        logger.info(f"{prefix}: {'resuming' if state == 'partial' else 'training'} -> {path}")
        status = train_one(configs[variant, seed], path)
        statuses[variant, seed] = status["status"]
        summary = ""
        if status["status"] == "done":
            metrics = read_json(path / "metrics.json") or {}
            summary = f", mIoU {100 * metrics.get('miou', float('nan')):.1f}"
        elif "error" in status:
            summary = f": {status['error']}"
        logger.info(f"{prefix}: {status['status']} in {status['wall_s_this_invocation']:.0f} s{summary}")
        _probe(path, configs[variant, seed], status["status"])
    return statuses


def _probe(path: Path, config: Config, state: str) -> None:
    """The one-hop / two-hop accuracy of a finished run (`ccnet.study.probe`), once."""
    from ccnet.study.probe import PROBE_NAME, probe_run

    if state == "done" and not (path / PROBE_NAME).is_file():
        result = probe_run(path, config)
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}%"

        logger.info(f"  probe: grey pixels on the key's lines {pct(result['one_hop_accuracy'])} correct, "
            f"off them {pct(result['two_hops_accuracy'])}")
