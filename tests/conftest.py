"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64_default():
    """Run the test with float64 as torch's default dtype, as the oracle comparisons need."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
