"""The core package imports and works without the optional detection stack (torchvision,
pycocotools), which is blocked here even where it is installed."""

import subprocess
import sys

BLOCK = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torchvision", "pycocotools"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Block())
"""

CHECK = """
import io, contextlib
import torch
import ccnet, ccnet.ops, ccnet.nn, ccnet.models, ccnet.losses, ccnet.data, ccnet.engine, ccnet.interop, ccnet.config
import ccnet.engine.trainer, ccnet.cli
from ccnet.cli import main

model = ccnet.CCNet(3, backbone="resnet18").eval()
with torch.no_grad():
    assert model(torch.rand(1, 3, 33, 33))["out"].shape == (1, 3, 33, 33)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["train", "configs/coco_maskrcnn_r50_rcca.yaml", "data.root=/nonexistent"])
assert code == 2, code
assert "task 'detection' needs the detection extra" in err.getvalue(), err.getvalue()
try:
    import ccnet.detection
except ImportError as error:
    assert "pip install 'ccnet-pytorch[detection]'" in str(error)
else:
    raise AssertionError("ccnet.detection imported without torchvision")
assert not any(m.split(".")[0] in ("torchvision", "pycocotools") for m in sys.modules)
print("ok")
"""


def test_core_works_without_torchvision():
    result = subprocess.run([sys.executable, "-c", BLOCK + CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
