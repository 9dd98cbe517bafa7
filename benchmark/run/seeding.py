"""Deterministic seeds derived from explicit keys, never from global RNG state.

A request's seed is ``derive_seed(run_seed, method_id, request_index)`` (DESIGN.md, "The method
contract"): it depends neither on batch size nor on how many workers run, so one worker and N
workers generate the same synthetic set.
"""

from __future__ import annotations

import torch

from augbench.canonical import derive_seed  # re-exported: seeds are part of the method contract

__all__ = ["derive_seed", "make_generator"]


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen

