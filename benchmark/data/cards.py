"""Dataset cards: declarative TOML files in ``datasets/`` (data only, never a Python package).

A card states what a dataset is (class names in official order, meta word, prompt template,
official layout, split sizes, licence, citation, sources with checksums) and which reader loads it
(USER_NEEDS §2.10). Cards are found along a search path: ``--datasets-dir``, then the
``AUGBENCH_DATASETS`` environment variable (``os.pathsep``-separated), then the cards that ship with
augbench: the checkout's ``datasets/`` folder, or its copy inside an installed wheel
(``augbench.shipped_data``; DESIGN.md, "Layout").
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augbench.plugins import did_you_mean
from augbench.shipped_data import shipped_data_dir

_NUMERIC_PREFIX = re.compile(r"^\d+\.")
#: The cards that ship with augbench (the checkout's ``datasets/``, or the wheel's copy of it).
SHIPPED_DATASETS_DIR = shipped_data_dir("datasets")
ENV_VAR = "AUGBENCH_DATASETS"


class CardError(ValueError):
    """A dataset card is missing or malformed."""


@dataclass(frozen=True)
class DatasetCard:
    """One dataset's card.

    Attributes:
        id: short identifier (``cub``, ``toybirds``), the card's file stem.
        name: human-readable name.
        kind: ``real`` (read from ``--data-root``) or ``embedded`` (the procedural world).
        reader: the reader id that loads it (see ``augbench.data.readers``).
        class_names: class names in official label order; index = integer label.
        meta: the meta-class word used in prompts (METHODS_SPEC §1.6).
        prompt_template: prompt with ``{name}`` and ``{meta}`` placeholders.
        splits: official split sizes, e.g. ``{"train": 5994, "test": 5794}``.
        raw: the whole parsed TOML, for reader-specific sections.
        strip_numeric_prefix: ``[classes] strip_numeric_prefix = true`` removes a leading ``NNN.``
            from names in prompts (CUB folder names ``001.Black_footed_Albatross``, METHODS_SPEC §8.2).
    """

    id: str
    name: str
    kind: str
    reader: str
    class_names: tuple[str, ...]
    meta: str
    prompt_template: str
    splits: dict[str, int]
    path: Path
    licence: str = ""
    citation: str = ""
    homepage: str = ""
    layout: dict[str, Any] = field(default_factory=dict)
    downloads: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    strip_numeric_prefix: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prompt_name(self, label: int) -> str:
        """The class name as used in prompts: ``_`` and ``/`` become spaces (METHODS_SPEC §1.6).

        With ``strip_numeric_prefix`` a leading ``NNN.`` is removed first, so CUB's
        ``001.Black_footed_Albatross`` becomes ``Black footed Albatross`` (METHODS_SPEC §8.2).
        """
        name = self.class_names[label]
        if self.strip_numeric_prefix:
            name = _NUMERIC_PREFIX.sub("", name, count=1)
        return " ".join(name.replace("_", " ").replace("/", " ").split())

    def prompt(self, label: int, template: str | None = None) -> str:
        """``template`` (default: the card's) filled with the class's prompt name and meta word."""
        text = (template or self.prompt_template).format(name=self.prompt_name(label), meta=self.meta)
        return " ".join(text.split())


def search_path(datasets_dir: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """The ordered list of folders searched for cards."""
    dirs: list[Path] = []
    if datasets_dir:
        items = [datasets_dir] if isinstance(datasets_dir, (str, Path)) else list(datasets_dir)
        dirs.extend(Path(d) for d in items)
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.extend(Path(d) for d in env.split(os.pathsep) if d)
    dirs.append(SHIPPED_DATASETS_DIR)
    return dirs


def _card_files(dirs: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            found.setdefault(f.stem, f)  # earlier folders win
    return found


def list_cards(datasets_dir=None) -> list[DatasetCard]:
    """All cards on the search path (earlier folders shadow later ones), sorted by id."""
    return [parse_card(p) for _, p in sorted(_card_files(search_path(datasets_dir)).items())]


def load_card(dataset_id: str, datasets_dir=None) -> DatasetCard:
    """The card named ``dataset_id``; an unknown id lists the known ones and suggests close matches."""
    files = _card_files(search_path(datasets_dir))
    if dataset_id not in files:
        raise CardError(
            f"unknown dataset {dataset_id!r}{did_you_mean(dataset_id, files)}. "
            f"Known datasets: {', '.join(sorted(files)) or '(none)'}. "
            f"Cards are searched in: {', '.join(str(d) for d in search_path(datasets_dir))}."
        )
    return parse_card(files[dataset_id])


def _require(table: dict, key: str, path: Path, section: str = "dataset"):
    if key not in table:
        raise CardError(f"{path}: [{section}] needs a {key!r} entry")
    return table[key]


def parse_card(path: str | Path) -> DatasetCard:
    """Parse and validate one card file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML: {exc}") from exc
    ds = raw.get("dataset")
    if not isinstance(ds, dict):
        raise CardError(f"{path}: missing [dataset] table")
    classes = raw.get("classes", {})
    if "names" in classes:
        names = [str(n) for n in classes["names"]]
    elif "file" in classes:
        class_file = path.parent / classes["file"]
        if not class_file.is_file():
            raise CardError(f"{path}: class list {class_file} does not exist")
        # Names are taken verbatim (Flowers has names with trailing spaces, METHODS_SPEC §8.2):
        # only the line terminator is stripped, and blank lines are not allowed.
        names = class_file.read_text(encoding="utf-8").split("\n")
        if names and names[-1] == "":
            names.pop()
    else:
        raise CardError(f"{path}: [classes] needs 'names' or 'file'")
    if not names or any(n.strip() == "" for n in names):
        raise CardError(f"{path}: class list is empty or contains blank names")
    declared = ds.get("num_classes")
    if declared is not None and declared != len(names):
        raise CardError(f"{path}: num_classes = {declared} but the class list has {len(names)} names")
    return DatasetCard(
        id=path.stem,
        name=str(_require(ds, "name", path)),
        kind=str(ds.get("kind", "real")),
        reader=str(_require(ds, "reader", path)),
        class_names=tuple(names),
        meta=str(ds.get("meta", "")),
        prompt_template=str(ds.get("prompt_template", "a photo of a {name} {meta}")),
        splits={str(k): int(v) for k, v in raw.get("splits", {}).items()},
        path=path,
        licence=str(ds.get("licence", "")),
        citation=str(ds.get("citation", "")),
        homepage=str(ds.get("homepage", "")),
        layout=dict(raw.get("layout", {})),
        downloads=tuple(raw.get("download", [])),
        raw=raw,
        strip_numeric_prefix=bool(classes.get("strip_numeric_prefix", False)),
    )
