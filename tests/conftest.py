"""Shared test set-up."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: pytest -n 2 runs two workers on two cores, and the SNN's many
    small ops ran 4-20x slower with two threads each on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
