"""Reusable contract tests and tiny components for method authors (built-in and third-party).

Two modules, loaded on first use of one of their names (PEP 562), so ``import augbench.testing`` needs
neither pytest (a test extra) nor torch:

* :mod:`augbench.testing.mixins`: the contract-test mixins (diffusers' ``PipelineTesterMixin`` idea:
  inherit one, name the method id, get the generic tests) and ``block_network``;
* :mod:`augbench.testing.tiny`: tiny components built from configs, never downloaded: a tiny Stable
  Diffusion and CLIP, ``tiny_profile``, and the in-memory dataset ``TinySource`` / ``tiny_card`` /
  ``tiny_subset``.

Example (a third-party package's tests)::

    from augbench.testing import BatchMethodTesterMixin

    class TestChannelFlip(BatchMethodTesterMixin):
        method_id = "channel_flip"
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchMethodTesterMixin": "mixins",
    "MethodTesterMixin": "mixins",
    "NetworkAccessError": "mixins",
    "OFFLINE_ENV": "mixins",
    "OfflineMethodTesterMixin": "mixins",
    "block_network": "mixins",
    "TinySource": "tiny",
    "cached_tiny_clip": "tiny",
    "cached_tiny_sd_pipeline": "tiny",
    "save_tiny_clip": "tiny",
    "save_tiny_sd_pipeline": "tiny",
    "tiny_card": "tiny",
    "tiny_profile": "tiny",
    "tiny_sd_components": "tiny",
    "tiny_subset": "tiny",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"augbench.testing.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'augbench.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
