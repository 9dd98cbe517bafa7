"""Content hashes for cache keys, manifests and result records.

Every cached stage is keyed by the hash of everything it depends on (DESIGN.md, "Data flow").
Hashes are computed over a canonical JSON encoding (sorted keys, no whitespace, UTF-8), so they
do not depend on dict order, the Python hash seed, the locale or the platform.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from augbench.canonical import canonical_json  # re-exported: the one canonical encoding


def content_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 of ``canonical_json(obj)``, truncated to ``length`` characters."""
    digest = hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
    return digest[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Full hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
