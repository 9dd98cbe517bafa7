"""Deterministic seeds derived from explicit keys, never from global RNG state.

A request's seed is ``derive_seed(run_seed, method_id, request_index)`` (DESIGN.md, "The method
contract"): it depends neither on batch size nor on how many workers run, so one worker and N
workers generate the same synthetic set.
"""

from __future__ import annotations

import hashlib

import torch

from augbench.run.hashing import canonical_json

_SEED_BITS = 63


def derive_seed(*key: object) -> int:
    """A 63-bit seed from a tuple of JSON-encodable key parts (stable across machines and runs)."""
    digest = hashlib.sha256(canonical_json(list(key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << _SEED_BITS) - 1)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen

