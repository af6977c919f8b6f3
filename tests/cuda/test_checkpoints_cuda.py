"""Checkpoints move between devices through the real command line: a run interrupted on CUDA
(float16 AMP with a GradScaler, ``amp=auto``) continues on the CPU, and the other way round; the
checkpoints evaluate on either device."""

import json

import pytest
import torch

from ccnet.cli import main
from ccnet.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.cuda

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=2", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux=true", "model.aux_channels=8", "optim.iterations=4", "log_interval=1",
    "checkpoint_interval=100", "num_visualizations=1", "amp=auto",
]


def _train(out, device, *extra):
    assert main(["train", *TINY, f"device={device}", *extra, "--output", str(out), "--no-progress"]) == 0


def _losses(out):
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["iteration"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.parametrize(("first", "then"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_run_interrupted_on_one_device_continues_on_the_other(tmp_path, capsys, first, then):
    out = tmp_path / "run"
    _train(out, first, "--stop-after", "2")
    checkpoint = load_checkpoint(out / "checkpoints" / "latest.pt")  # onto the CPU, whatever wrote it
    assert checkpoint["iteration"] == 2
    assert all(t.device.type == "cpu" for t in checkpoint["model"].values())
    assert bool(checkpoint["scaler"]) == (first == "cuda")  # amp=auto: float16 + GradScaler on CUDA only

    _train(out, then, "--resume", "auto")
    checkpoint = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert checkpoint["iteration"] == 4
    assert bool(checkpoint["scaler"]) == (then == "cuda")
    losses = _losses(out)
    assert sorted(losses) == [1, 2, 3, 4] and all(torch.isfinite(torch.tensor(list(losses.values()))))
    assert json.loads((out / "metrics.json").read_text())["iteration"] == 4

    # The finished checkpoint evaluates on both devices to the same score.
    scores = {}
    for device in ("cpu", "cuda"):
        result = tmp_path / f"eval-{device}.json"
        assert main(["evaluate", "--checkpoint", str(out / "checkpoints" / "latest.pt"), f"device={device}",
                     "--output", str(result)]) == 0
        scores[device] = json.loads(result.read_text())["miou"]
    assert scores["cpu"] == pytest.approx(scores["cuda"], abs=0.05)  # a few argmax flips at most
    capsys.readouterr()
