"""Canonical JSON and the seeds derived from it: the encodings every cache key and seed rests on.

Hashes and seeds are computed over a canonical JSON encoding (sorted keys, no whitespace, UTF-8), so
they depend neither on dict order, the Python hash seed, the locale nor the platform (DESIGN.md, "Data
flow"). A request's seed is ``derive_seed(run_seed, family, request_index)`` (DESIGN.md, "The method
contract"): it depends neither on batch size nor on how many workers run.

Standard library only, and below every other augbench module: the method author's API
(``augbench.contract``) derives its request seeds here without importing the runner;
``augbench.run.hashing`` and ``augbench.run.seeding`` re-export these names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["canonical_json", "derive_seed"]

_SEED_BITS = 63


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"cannot hash object of type {type(obj).__name__}: {obj!r}")


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj`` (sorted keys, compact separators, ASCII-safe)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def derive_seed(*key: object) -> int:
    """A 63-bit seed from a tuple of JSON-encodable key parts (stable across machines and runs)."""
    digest = hashlib.sha256(canonical_json(list(key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << _SEED_BITS) - 1)
