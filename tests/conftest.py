"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    """Tests never see the developer's data root or extra card folders."""
    monkeypatch.delenv("AUGBENCH_DATA", raising=False)
    monkeypatch.delenv("AUGBENCH_DATASETS", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-off costs (and stalls on a shared 2-core box)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
