"""Fixtures shared by the CUDA tests."""

import pytest
import torch


@pytest.fixture
def full_float32_matmuls():
    """float32 matmuls in full precision (TF32 off), whatever the machine's default."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)
