"""Readers of the official dataset layouts (METHODS_SPEC §8.3).

Each reader turns one dataset's official files into an :class:`~augbench.data.core.ImageSource`:
splits as ordered lists of :class:`~augbench.data.core.Sample` (stable string image id, integer
label, attributes) and images loaded by id. Where torchvision reads the official files faithfully
(Flowers102, FGVCAircraft, OxfordIIITPet, StanfordCars) its dataset class does the parsing, always
with ``download=False``; CUB-200-2011 and Waterbirds have readers of their own.

Every reader

* finds its folder under the data root (``--data-root`` / ``$AUGBENCH_DATA``) by the card's
  ``[layout] folder`` and fails with the expected folder tree and how to obtain the data when it is
  missing (USER_NEEDS §2.1-2.3);
* names every missing file the layout requires;
* checks the class order of the official class list (``classes.txt``, ``variants.txt``,
  ``cars_meta.mat``, ...) against the card, because a silent reordering would corrupt every label
  (METHODS_SPEC §8.2);
* keeps the order of the official files: no directory listing decides an order, so the same files
  give the same samples on every machine.

Counts against the card and checksums are checked by ``augbench data verify``
(:mod:`augbench.data.verify`), not at load time, so that small copies can still be loaded.

One module per family of official layouts:

* :mod:`~augbench.data.readers.birds`: CUB-200-2011 and Waterbirds (own parsers);
* :mod:`~augbench.data.readers.oxford`: Oxford Flowers-102 and Oxford-IIIT Pets (torchvision);
* :mod:`~augbench.data.readers.vehicles`: FGVC-Aircraft and Stanford Cars (torchvision);
* :mod:`~augbench.data.readers.official`: the common base :class:`OfficialSource` and image decoding;
* :mod:`~augbench.data.readers.layout`: finding the dataset folder, naming what is missing.

The dataset-reader table (``augbench.data.core``) names each reader by its module, e.g.
``augbench.data.readers.birds:CUBSource``.
"""

from __future__ import annotations

from augbench.data.readers.birds import WATERBIRDS_SPLITS, CUBSource, WaterbirdsSource
from augbench.data.readers.layout import (
    check_required,
    data_status,
    dataset_folders,
    expected_tree,
    how_to_obtain,
    locate_dataset,
)
from augbench.data.readers.official import IMAGE_SUFFIXES, OfficialSource, class_order_mismatch, open_image
from augbench.data.readers.oxford import FlowersSource, PetsSource
from augbench.data.readers.vehicles import AircraftSource, CarsSource

__all__ = [
    "IMAGE_SUFFIXES",
    "WATERBIRDS_SPLITS",
    "AircraftSource",
    "CUBSource",
    "CarsSource",
    "FlowersSource",
    "OfficialSource",
    "PetsSource",
    "WaterbirdsSource",
    "check_required",
    "class_order_mismatch",
    "data_status",
    "dataset_folders",
    "expected_tree",
    "how_to_obtain",
    "locate_dataset",
    "open_image",
]
