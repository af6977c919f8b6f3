import pytest
import torch

from ccnet.data.synthetic import SYNTHETIC_INFO
from ccnet.models import CCNet


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    """A small untrained CCNet for the synthetic classes, saved as a model folder."""
    torch.manual_seed(0)
    model = CCNet(SYNTHETIC_INFO.num_classes, backbone="resnet18", recurrence=2, output_stride=16,
                  stem_widths=(8, 8, 16), head_channels=16, aux=False, gamma_init=1.0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(folder, class_names=SYNTHETIC_INFO.class_names, palette=SYNTHETIC_INFO.palette)
    return folder
