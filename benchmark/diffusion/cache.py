"""The process-wide cache of warm models (DESIGN.md, "Shared diffusion machinery").

One warm pipeline per (base model, revision, dtype, device, artifact) per process: the first method
that needs a model loads it through ``PipelineCache.get(key, factory)``, every later one reuses it.
``MethodContext.pipelines`` defaults to :data:`PROCESS_PIPELINES`; tests give a context its own cache.

Standard library only (no diffusers), so the method author's API (``augbench.contract``) can name the
cache without loading any model code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["PROCESS_PIPELINES", "PipelineCache"]


class PipelineCache:
    """Process-wide cache of warm models: one entry per key (e.g. ``(model, revision, artifact)``).

    Thread-safe; the factory runs at most once per key.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PROCESS_PIPELINES = PipelineCache()
