"""A real 2-process ``torchrun`` training run on the CPU (gloo), SyncBatchNorm included."""

import json
import os
import subprocess
import sys

import pytest

from ccnet.cli import main
from ccnet.engine.checkpoint import load_checkpoint

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=3", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux_channels=8", "optim.iterations=3", "log_interval=1", "num_visualizations=0",
]


def test_torchrun_two_processes_gloo(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ccnet.cli", "train", *TINY, "--output", str(out), "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 2 x 2" in result.stdout

    checkpoint = load_checkpoint(out / "checkpoints/latest.pt")
    assert checkpoint["iteration"] == 3 and len(checkpoint["rng"]) == 2  # one RNG state per rank
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3]

    # The metrics of the distributed evaluation (each rank scored its shard, then all-reduced)
    # equal a single-process evaluation of the saved weights.
    distributed = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", "--checkpoint", str(out / "checkpoints/latest.pt"),
                 "--output", str(tmp_path / "single.json")]) == 0
    single = json.loads((tmp_path / "single.json").read_text())
    # Equal up to a rare argmax flip from different thread counts (different float summation order).
    assert single["iou"] == pytest.approx(distributed["iou"], abs=5e-3, nan_ok=True)
    assert single["miou"] == pytest.approx(distributed["miou"], abs=5e-3)
    capsys.readouterr()
