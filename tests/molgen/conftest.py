"""Every molgen test runs torch on one thread (tiny tensors: OpenMP barriers cost more than they save on a
busy 2-core machine) and gets the thread count back afterwards (training and sampling set their own)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
