"""Datasets: the common image-source interface, subsets/manifests, readers and protocols.

A *source* (``ImageSource``) exposes the official splits of one dataset as lists of ``Sample``
(image id, integer label, extra attributes such as the Waterbirds group) and loads images by id.
Real datasets are read from their official layouts (``augbench.data.readers``); the embedded
world's datasets are rendered procedurally (``augbench.world``). Protocols
(``augbench.protocols``) turn a split into a ``Subset``: an ordered manifest of image ids
whose hash goes into every result (USER_NEEDS §2.5).
"""

from __future__ import annotations

import importlib

# Lazy (PEP 562): ``augbench.data.cards`` is read by torch- and PIL-free paths (``augbench datasets``,
# a wheel probe without site-packages), so importing the package must not import ``core`` (PIL).
_EXPORTS = {
    "DataError": "core",
    "ImageSource": "core",
    "Sample": "core",
    "Subset": "core",
    "open_dataset": "core",
    "register_reader": "core",
    "resolve_data_root": "core",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"augbench.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'augbench.data' has no attribute {name!r}")
