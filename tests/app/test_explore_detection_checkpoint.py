"""ccnet explore with a Mask R-CNN checkpoint: named as one, not a state-dict mismatch."""

import pytest
import torch

from ccnet.cli import main
from ccnet.config import Config
from ccnet.data.synthetic import SYNTHETIC_INFO
from ccnet.files import atomic_save


def test_explore_names_a_mask_rcnn_checkpoint(tmp_path, capsys):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    config = Config()
    config.task = "detection"
    path = tmp_path / "latest.pt"
    # What the refusal reads is the stored task; the weights would be a Mask R-CNN's.
    atomic_save({"format": 1, "iteration": 0, "model": {"backbone.body.conv1.weight": torch.zeros(1)},
                 "config": config.to_dict(), "info": SYNTHETIC_INFO.to_dict()}, path)
    assert main(["explore", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"ccnet explore: error: {path}: this is a Mask R-CNN checkpoint (task: detection)")
    assert f"use ccnet predict --checkpoint {path}" in err
