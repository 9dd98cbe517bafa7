"""Datasets: the common image-source interface, subsets/manifests, readers and protocols.

A *source* (``ImageSource``) exposes the official splits of one dataset as lists of ``Sample``
(image id, integer label, extra attributes such as the Waterbirds group) and loads images by id.
Real datasets are read from their official layouts (``benchmark.data.readers``); the embedded
world's datasets are rendered procedurally (``benchmark.world``). Protocols
(``benchmark.data.protocols``) turn a split into a ``Subset``: an ordered manifest of image ids
whose hash goes into every result (USER_NEEDS §2.5).
"""

from __future__ import annotations

from benchmark.data.core import (
    DataError,
    ImageSource,
    Sample,
    Subset,
    open_dataset,
    register_reader,
    resolve_data_root,
)

__all__ = [
    "DataError",
    "ImageSource",
    "Sample",
    "Subset",
    "open_dataset",
    "register_reader",
    "resolve_data_root",
]
