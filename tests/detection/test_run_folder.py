"""A Mask R-CNN run folder is protected like a segmentation one: a rerun without --resume is
refused and changes nothing; --overwrite starts over; --resume names the iteration."""

import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

from ccnet.cli import main

from .conftest import TINY_MODEL


def _config(root, *extra):
    return [*TINY_MODEL, f"data.root={root}", "data.train_split=train", "data.val_split=val", "data.batch_size=2",
            "data.workers=0", "optim.iterations=2", "log_interval=1", "checkpoint_interval=1",
            "num_visualizations=0", "device=cpu", *extra]


def test_a_finished_detection_run_survives_a_rerun_without_resume(tiny_coco, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_config(tiny_coco, "optim.iterations=1"), "--output", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoints/latest.pt", out / "metrics.json", out / "log.jsonl")}
    capsys.readouterr()
    assert main(["train", *_config(tiny_coco), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a run (checkpoints/latest.pt, log.jsonl, metrics.json)" in err, err
    assert before == {p.name: p.read_bytes() for p in (out / "checkpoints/latest.pt", out / "metrics.json",
                                                       out / "log.jsonl")}
    assert main(["train", *_config(tiny_coco), "--output", str(out), "--resume", "auto", "--no-progress"]) == 0
    assert f"resumed from iteration 1 of {out / 'checkpoints' / 'latest.pt'}" in capsys.readouterr().out
    assert main(["train", *_config(tiny_coco, "data.train_split=val"), "--output", str(tmp_path / "other"),
                 "--resume", str(out / "checkpoints" / "latest.pt"), "--no-progress"]) == 2
    assert "beyond this run's optim.iterations" not in (err := capsys.readouterr().err)
    assert "other data settings (data.train_split 'train' -> 'val')" in err, err
