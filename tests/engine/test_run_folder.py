"""A run folder holds one run: a rerun without --resume is refused, --overwrite deletes the old
run's files, --resume refuses other data or another run's checkpoint and says where it resumed."""

import json

import pytest

import ccnet.engine.trainer as trainer_module
from ccnet.cli import main
from ccnet.config import ConfigError, load_config
from ccnet.engine.trainer import Trainer, existing_run

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=2", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux_channels=8", "optim.iterations=2", "log_interval=1",
    "checkpoint_interval=1", "num_visualizations=1",
]


def _tiny(*extra):
    return load_config(None, [*TINY, *extra])


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    Trainer(_tiny(), output_dir=folder, progress=False).fit()
    return folder


def test_a_finished_run_survives_a_rerun_without_resume(finished, tmp_path, capsys):
    before = _snapshot(finished)
    assert {"checkpoints/latest.pt", "metrics.json", "log.jsonl", "model/config.json"} <= set(before)
    assert main(["train", *TINY, "--output", str(finished), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{finished}: holds a run (checkpoints/latest.pt, log.jsonl, metrics.json, model)" in err
    assert "pass --resume auto to continue it, or --overwrite" in err
    assert _snapshot(finished) == before  # not one byte changed
    # An interrupted run (a checkpoint, no metrics yet) is protected the same way.
    Trainer(_tiny(), output_dir=tmp_path, stop_after=1, progress=False).fit()
    with pytest.raises(FileExistsError, match="holds a run"):
        Trainer(_tiny(), output_dir=tmp_path, progress=False)


def test_overwrite_deletes_the_old_run_first_and_keeps_the_users_files(tmp_path, capsys):
    Trainer(_tiny("optim.iterations=1"), output_dir=tmp_path, progress=False).fit()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "predictions" / "stale.png").write_bytes(b"old")
    old_log = (tmp_path / "log.jsonl").read_text()
    assert main(["train", *TINY, "--output", str(tmp_path), "--overwrite", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "--overwrite: deleted the previous run's checkpoints, model, predictions" in out, out
    assert not (tmp_path / "predictions" / "stale.png").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2]  # the new run's only
    assert (tmp_path / "log.jsonl").read_text() != old_log
    assert json.loads((tmp_path / "metrics.json").read_text())["iteration"] == 2
    assert main(["train", *TINY, "--output", str(tmp_path), "--overwrite", "--resume", "auto"]) == 2
    assert "--overwrite deletes the run there and --resume continues it" in capsys.readouterr().err


def test_resume_names_the_iteration_and_rewrites_the_log_from_the_checkpoint(tmp_path, capsys):
    Trainer(_tiny(), output_dir=tmp_path, stop_after=1, progress=False).fit()
    with open(tmp_path / "log.jsonl", "a") as log:  # an interruption after the checkpoint: a record past it
        log.write(json.dumps({"iteration": 2, "loss": 123.0}) + "\n")
    capsys.readouterr()
    assert main(["train", *TINY, "amp=off", "--output", str(tmp_path), "--resume", "auto", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resumed from iteration 1 of {tmp_path / 'checkpoints' / 'latest.pt'}" in out, out
    assert "(changed since: amp 'auto' -> 'off')" in out, out
    losses = [json.loads(line).get("loss") for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert 123.0 not in losses and len([v for v in losses if v is not None]) == 2


@pytest.mark.parametrize(("override", "key"), [("data.crop_size=[32,32]", "data.crop_size [96, 96] -> [32, 32]"),
                                               ("data.batch_size=1", "data.batch_size 2 -> 1"),
                                               ("data.dataset=synthetic_video", "data.dataset 'synthetic'")])
def test_resume_refuses_other_data_settings(finished, tmp_path, override, key):
    checkpoint = finished / "checkpoints" / "latest.pt"
    with pytest.raises(ConfigError, match="checkpoint was trained with other data settings") as error:
        Trainer(_tiny(override, "optim.iterations=3"), output_dir=tmp_path / "next", resume=checkpoint,
                progress=False).fit()
    assert key in str(error.value)
    assert not (tmp_path / "next").exists()  # refused before anything was written


def test_resume_refuses_another_runs_checkpoint_past_the_schedule(finished, tmp_path):
    checkpoint = finished / "checkpoints" / "latest.pt"
    with pytest.raises(ConfigError, match=r"checkpoint is at iteration 2, beyond this run's optim\.iterations=1"):
        Trainer(_tiny("optim.iterations=1"), output_dir=tmp_path / "short", resume=checkpoint, progress=False).fit()
    # Nor may another run's checkpoint be continued inside a folder that holds a run.
    with pytest.raises(FileExistsError, match="holds another run"):
        Trainer(_tiny("optim.iterations=3"), output_dir=finished, resume=tmp_path / "elsewhere.pt", progress=False)


def test_a_run_that_fails_at_start_up_leaves_no_folder(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("bad batch")

    monkeypatch.setattr(Trainer, "_step", broken)
    with pytest.raises(ValueError, match="bad batch"):
        Trainer(_tiny(), output_dir=tmp_path / "new", progress=False).fit()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="bad batch"):
        Trainer(_tiny(), output_dir=tmp_path / "kept", progress=False).fit()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]
    assert existing_run(tmp_path / "kept") == []


def test_train_output_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer_module.Trainer, "_build", lambda self: pytest.fail("built"))
    (tmp_path / "file").write_text("x")
    assert main(["train", *TINY, "--output", str(tmp_path / "file")]) == 2
    assert "--output " + str(tmp_path / "file") + ": is a file, not a folder" in capsys.readouterr().err
    assert main(["train", *TINY, "--output", str(tmp_path / "file" / "run")]) == 2
    assert "is a file, so nothing can be written under it" in capsys.readouterr().err
