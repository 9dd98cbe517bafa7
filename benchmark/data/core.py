"""The image-source interface shared by real datasets and the embedded world."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from augbench.data.cards import DatasetCard, load_card
from augbench.plugins import Registry, UnknownNameError
from augbench.run.hashing import canonical_json, content_hash

DATA_ROOT_ENV = "AUGBENCH_DATA"


class DataError(RuntimeError):
    """Data is missing, incomplete or inconsistent with its card. The message says how to fix it."""


@dataclass(frozen=True)
class Sample:
    """One image of a split: a stable string id, an integer label and optional attributes.

    ``attrs`` carries protocol-relevant metadata, e.g. Waterbirds' ``{"y": 1, "place": 0}``.
    """

    image_id: str
    label: int
    attrs: Mapping[str, Any] = field(default_factory=dict)


class ImageSource(ABC):
    """One dataset's official splits, addressable by image id."""

    #: Revision of the pixels behind the ids, for sources that compute their images (the embedded
    #: world's render version); written into subset manifests so that cached results keyed on a
    #: manifest never outlive a change of the drawing code. ``None`` for files on disk.
    revision: str | None = None

    def __init__(self, card: DatasetCard):
        self.card = card

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.card.class_names

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @abstractmethod
    def split_names(self) -> list[str]:
        """Names of the available splits (e.g. ``["train", "test"]``)."""

    @abstractmethod
    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` in a deterministic, documented order."""

    @abstractmethod
    def load_image(self, image_id: str) -> Image.Image:
        """The RGB image with id ``image_id``; a corrupt or missing file raises ``DataError`` naming it."""

    def _check_split(self, split: str) -> None:
        if split not in self.split_names():
            raise DataError(
                f"dataset {self.card.id!r} has no split {split!r}; available: {', '.join(self.split_names())}"
            )


@dataclass(frozen=True)
class Subset:
    """A protocol's training subset (or any list of images) as a manifest of image ids.

    The manifest is hashed into every result; two machines that draw the same subset get the same
    ``manifest_hash`` byte for byte (ids, labels and the protocol parameters, canonical JSON).
    """

    dataset: str
    split: str
    protocol: str
    params: Mapping[str, Any]
    samples: tuple[Sample, ...]
    revision: str | None = None  # the source's ``ImageSource.revision``

    @classmethod
    def of_source(cls, source: ImageSource, split: str, protocol: str, params: Mapping[str, Any],
                  samples: tuple[Sample, ...]) -> Subset:
        """A subset drawn from ``source``: its card id and pixel revision recorded in the manifest."""
        return cls(source.card.id, split, protocol, params, samples, source.revision)

    @property
    def image_ids(self) -> list[str]:
        return [s.image_id for s in self.samples]

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def class_counts(self, num_classes: int) -> list[int]:
        counts = [0] * num_classes
        for s in self.samples:
            counts[s.label] += 1
        return counts

    def manifest(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (what ``--write`` saves and what is hashed)."""
        return {
            "format": "augbench.subset/1",
            "dataset": self.dataset,
            "split": self.split,
            "protocol": self.protocol,
            "params": dict(self.params),
            "images": [[s.image_id, s.label] for s in self.samples],
        } | ({"revision": self.revision} if self.revision is not None else {})

    @property
    def manifest_hash(self) -> str:
        return content_hash(self.manifest(), length=64)

    def to_json(self) -> str:
        return canonical_json(self.manifest())

    def write(self, path: str | Path) -> Path:
        """Write the manifest atomically as canonical JSON (byte-identical for identical subsets)."""
        from augbench.run.store import write_text_atomic

        path = Path(path)
        write_text_atomic(path, self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path, source: ImageSource | None = None) -> Subset:
        """Read a manifest written by ``write``; with ``source``, ids are checked and attrs restored."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != "augbench.subset/1":
            raise DataError(f"{path}: not an augbench subset manifest (format {data.get('format')!r})")
        attrs: dict[str, Mapping[str, Any]] = {}
        if source is not None:
            attrs = {s.image_id: s.attrs for s in source.samples(data["split"])}
            missing = [i for i, _ in data["images"] if i not in attrs]
            if missing:
                raise DataError(f"{path}: {len(missing)} image ids are not in {source.card.id}: {missing[:5]}")
        samples = tuple(Sample(i, int(lbl), attrs.get(i, {})) for i, lbl in data["images"])
        return cls(data["dataset"], data["split"], data["protocol"], data["params"], samples, data.get("revision"))


# --- readers -------------------------------------------------------------------------------------

ReaderFactory = Callable[[DatasetCard, "Path | None"], ImageSource]


def _check_reader(reader_id: str, factory: Any) -> None:
    if not callable(factory):
        raise TypeError(f"expected a callable (card, data_root) -> ImageSource, got {factory!r}")


#: The readers a card's ``reader`` names (imported on first use); third parties add one through the
#: ``augbench.readers`` entry-point group or :func:`register_reader`.
READERS: Registry[ReaderFactory] = Registry(
    "dataset reader",
    "augbench.readers",
    builtins={
        "cub": "augbench.data.readers.birds:CUBSource",
        "aircraft": "augbench.data.readers.vehicles:AircraftSource",
        "cars": "augbench.data.readers.vehicles:CarsSource",
        "pets": "augbench.data.readers.oxford:PetsSource",
        "flowers": "augbench.data.readers.oxford:FlowersSource",
        "waterbirds": "augbench.data.readers.birds:WaterbirdsSource",
        "world": "augbench.world.datasets:WorldSource",
    },
    validate=_check_reader,
)


def register_reader(reader_id: str, factory: str | ReaderFactory) -> None:
    """Register (or replace) a reader: a callable ``(card, data_root) -> ImageSource`` or a ``module:attr`` string."""
    READERS.register(reader_id, factory, replace=True)


def _reader(reader_id: str) -> ReaderFactory:
    try:
        return READERS.get(reader_id)
    except UnknownNameError as exc:
        raise DataError(str(exc)) from None


def resolve_data_root(data_root: str | Path | None) -> Path | None:
    """``--data-root``, else ``$AUGBENCH_DATA``, else None (embedded datasets need no root)."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else None


def open_dataset(dataset: str | DatasetCard, data_root: str | Path | None = None, datasets_dir=None) -> ImageSource:
    """Open a dataset by card id (or card) with the reader its card names."""
    card = dataset if isinstance(dataset, DatasetCard) else load_card(dataset, datasets_dir)
    return _reader(card.reader)(card, resolve_data_root(data_root))
