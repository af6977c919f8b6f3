"""The trainer: exact resume, atomic checkpoints, logs and outputs, poly learning rate."""

import json

import pytest
import torch

import ccnet.engine.checkpoint as checkpoint_module
import ccnet.engine.trainer as trainer_module
from ccnet.config import ConfigError, load_config
from ccnet.engine.checkpoint import load_checkpoint
from ccnet.engine.trainer import Trainer, consistency_weight, lr_factor

TINY = [
    "data.synthetic_size=[48, 48]", "data.synthetic_val_samples=2", "data.batch_size=2", "data.workers=0",
    "model.head_channels=16", "model.aux=true", "model.aux_channels=8", "optim.iterations=4", "log_interval=1",
    "checkpoint_interval=100", "num_visualizations=1",
]


def _tiny(*extra):
    return load_config(None, [*TINY, *extra])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    straight = Trainer(_tiny("model.dropout=0.3"), output_dir=tmp_path / "a", progress=False).fit()
    # Interrupted after 2 of 4 iterations, with a different number of loader workers each time.
    Trainer(_tiny("model.dropout=0.3", "data.workers=2"), output_dir=tmp_path / "b", stop_after=2,
            progress=False).fit()
    assert load_checkpoint(tmp_path / "b/checkpoints/latest.pt")["iteration"] == 2
    resumed = Trainer(_tiny("model.dropout=0.3", "data.workers=1"), output_dir=tmp_path / "b", resume="auto",
                      progress=False).fit()
    a = load_checkpoint(tmp_path / "a/checkpoints/latest.pt")
    b = load_checkpoint(tmp_path / "b/checkpoints/latest.pt")
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])
    losses = {r["iteration"]: r["loss"] for r in straight.history if "loss" in r}
    resumed_losses = {r["iteration"]: r["loss"] for r in resumed.history if "loss" in r}
    assert losses == resumed_losses
    assert straight.metrics.miou == resumed.metrics.miou


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    Trainer(_tiny(), output_dir=tmp_path, stop_after=1, progress=False).fit()
    good = (tmp_path / "checkpoints/latest.pt").read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        Trainer(_tiny(), output_dir=tmp_path, resume="auto", stop_after=2, progress=False).fit()
    assert (tmp_path / "checkpoints/latest.pt").read_bytes() == good
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    assert load_checkpoint(tmp_path / "checkpoints/latest.pt")["iteration"] == 1


def test_run_directory_holds_logs_metrics_and_predictions(tmp_path):
    result = Trainer(_tiny(), output_dir=tmp_path, progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    assert [r["iteration"] for r in train_records] == [1, 2, 3, 4]
    assert {"lr", "main", "aux", "time_per_iter", "data_time"} <= set(train_records[0])
    assert records[-1]["type"] == "eval" and records[-1]["mIoU"] == pytest.approx(result.metrics.miou)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["class_names"][0] == "background" and len(metrics["iou"]) == len(metrics["class_names"])
    assert len(list((tmp_path / "predictions").glob("*.png"))) == 1
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(tmp_path / "config.yaml") == _tiny()


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    def nan_criterion(config, ignore_index=255):
        return lambda outputs, target: (outputs["out"].sum() * float("nan"), {})

    monkeypatch.setattr(trainer_module, "build_criterion", nan_criterion)
    with pytest.raises(FloatingPointError, match="iteration 1: loss is nan"):
        Trainer(_tiny(), output_dir=tmp_path, progress=False).fit()


def test_poly_learning_rate_with_warmup():
    config = load_config(None, ["optim.lr=0.1", "optim.iterations=100", "optim.power=0.9"])
    assert lr_factor(0, config) == 1.0
    assert lr_factor(50, config) == pytest.approx(0.5**0.9)
    assert lr_factor(100, config) == 0.0
    config = load_config(None, ["optim.lr=0.1", "optim.iterations=100", "optim.warmup_iters=10",
                                "optim.warmup_ratio=0.1", "optim.min_lr=0.001"])
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(100, config) == pytest.approx(0.01)


def test_consistency_weight_warms_up_linearly():
    config = load_config(None, ["loss.consistency_warmup_iters=4"])
    assert [consistency_weight(i, config) for i in (1, 2, 4, 5, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert consistency_weight(1, load_config(None, [])) == 1.0
    with pytest.raises(ConfigError, match=r"loss\.consistency_warmup_iters: -1 is below the minimum \(allowed: >= 0\)"):
        load_config(None, ["loss.consistency_warmup_iters=-1"])


def test_consistency_run_logs_its_weight_and_the_two_gradient_norms(tmp_path):
    trainer = Trainer(_tiny("optim.iterations=2", "loss.consistency=true", "loss.consistency_warmup_iters=4",
                            "optim.clip_grad_norm=null"), output_dir=tmp_path / "a", progress=False)
    trainer.fit()
    train = [r for r in trainer.history if r.get("type") != "eval"]
    assert [r["consistency_weight"] for r in train] == [0.25, 0.5]
    for r in train:  # the two parts add up to the total gradient
        total_sq = r["grad_norm_ce"] ** 2 + r["grad_norm_consistency"] ** 2 + 2 * r["grad_cosine"] * (
            r["grad_norm_ce"] * r["grad_norm_consistency"])
        assert total_sq == pytest.approx(r["grad_norm"] ** 2, rel=1e-3)
        assert r["grad_norm_consistency"] > 0 and -1 <= r["grad_cosine"] <= 1
    # a consistency term of weight zero everywhere has no gradient: all of it is the cross-entropy's
    zero = Trainer(_tiny("optim.iterations=1", "loss.consistency=true", "loss.consistency_alpha=0",
                         "loss.consistency_beta=0", "loss.consistency_gamma=0"), output_dir=tmp_path / "b",
                   progress=False)
    zero.fit()
    record = next(r for r in zero.history if r.get("type") != "eval")
    assert record["grad_norm_consistency"] == 0
    assert record["grad_norm_ce"] == pytest.approx(record["grad_norm"], rel=1e-4)
    assert "grad_norm_ce" not in Trainer(_tiny("optim.iterations=1"), output_dir=tmp_path / "c",
                                         progress=False).fit().history[0]


def test_heads_get_their_learning_rate_multiplier(tmp_path):
    trainer = Trainer(_tiny("optim.lr=0.02", "optim.head_lr_mult=3"), output_dir=tmp_path, progress=False)
    trainer._build()
    backbone_group, head_group = trainer.optimizer.param_groups
    backbone_ids = {id(p) for p in trainer.model.backbone.parameters()}
    assert backbone_group["lr"] == pytest.approx(0.02) and head_group["lr"] == pytest.approx(0.06)
    assert {id(p) for p in backbone_group["params"]} == backbone_ids
    assert any(p is trainer.model.head.cca.gamma for p in head_group["params"])
    assert len(backbone_group["params"]) + len(head_group["params"]) == len(list(trainer.model.parameters()))


@pytest.mark.parametrize("max_norm", [None, 1e-3])
def test_gradient_clipping_bounds_the_step_and_logs_the_norm(tmp_path, monkeypatch, max_norm):
    extra = [f"optim.clip_grad_norm={'null' if max_norm is None else max_norm}"]
    trainer = Trainer(_tiny("optim.iterations=2", *extra), output_dir=tmp_path, progress=False)
    norms = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    trainer.fit()
    logged = [r["grad_norm"] for r in trainer.history if "grad_norm" in r]
    assert len(norms) == len(logged) == 2 and all(n > 1e-2 for n in logged)  # the norm before clipping
    if max_norm is None:
        assert norms == pytest.approx(logged, rel=1e-4)
    else:
        assert all(n <= max_norm * 1.001 for n in norms)


def test_resume_with_float16_amp_after_a_run_without(tmp_path):
    # A run started without a GradScaler (CPU, amp=auto) continues with one (as on a GPU, amp=fp16):
    # the empty scaler state of the checkpoint leaves the fresh scaler as it is.
    Trainer(_tiny(), output_dir=tmp_path, stop_after=2, progress=False).fit()
    assert load_checkpoint(tmp_path / "checkpoints/latest.pt")["scaler"] == {}
    result = Trainer(_tiny("amp=fp16"), output_dir=tmp_path, resume="auto", progress=False).fit()
    assert result.iteration == 4
    assert load_checkpoint(tmp_path / "checkpoints/latest.pt")["scaler"]["scale"] > 0
