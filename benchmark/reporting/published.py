"""The papers' published tables, for side-by-side reports (DESIGN.md, "Results and reports").

Each table of METHODS_SPEC §9 ("Results tables of both papers") is one TOML file in the checkout's
``reports/published/`` folder (data only, never Python; DESIGN.md "Layout"), which an installed
wheel carries inside the package (``augbench.shipped_data``): P1 Tab.1 (§9.1), P2 Tab.1 ResNet-50 and
ViT-B/16 (§9.2), P2 Tab.2 (§9.3), P2 Tab.3 (§9.4) and P2 Tab.4 (§9.5). The numbers are exactly as printed.

A file names its columns the way our report tables do, ``(dataset id, setting)`` with the setting
built from the cell's protocol parameters (``shots=5``, ``imbalance_factor=100``, ``full``) and
Waterbirds groups as ``("groups", "L,L")`` (``augbench.reporting.tables``), so a published cell and a
measured cell with the same key are the same experiment. Rows give the method as printed and, where
there is one, our registry id (``method_id``). ``[[averages]]`` declares the printed ``Avg`` columns
(which cells each one averages); a row stores its printed ``avg`` and the bracketed ``delta`` where
printed (P2 Tab.2 prints only the difference for every row but CE, §9.3). A row may also carry the printed
LPIPS diversity of its synthetic set (``lpips``, in %, P2 Tab.4), which reports show in an ``LPIPS`` column.

Example:
    >>> table = load_published("p2_tab3")
    >>> table.row("diff_ii").cells[("groups", "W,L")]
    (42.03, None)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augbench.protocols import PROTOCOLS
from augbench.shipped_data import shipped_data_dir

PUBLISHED_DIR = shipped_data_dir("reports") / "published"

#: A report column: (dataset id, setting), e.g. ``("cub", "shots=5")``.
Column = tuple[str, str]


class PublishedError(ValueError):
    """A published table is unknown or its file is malformed."""


@dataclass(frozen=True)
class PublishedAverage:
    """One printed ``Avg`` column: its label as printed and the cells it averages."""

    label: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class PublishedRow:
    """One printed row.

    Attributes:
        method: the method's name as printed (``Ours (Diff-II)``).
        method_id: our registry id (``diff_ii``), planned or registered; ``None`` if there is none.
        cells: ``{(dataset, setting): (mean, std or None)}`` in the table's column order.
        avg: the printed ``Avg`` per ``PublishedTable.averages`` entry (``None`` where not printed).
        delta: the printed difference to the baseline row per average (``None`` where not printed).
        lpips: the printed LPIPS diversity of the row's synthetic set in % (P2 Tab.4), ``None`` where not printed.
    """

    method: str
    method_id: str | None
    cells: dict[Column, tuple[float, float | None]]
    avg: tuple[float | None, ...]
    delta: tuple[float | None, ...]
    lpips: float | None = None


@dataclass(frozen=True)
class PublishedTable:
    """One published table (METHODS_SPEC §9) as stored in ``reports/published/<id>.toml``.

    Attributes:
        id: the file stem, e.g. ``p2_tab1_resnet50``; what a suite's ``published`` list names.
        title: what the table shows, for captions.
        source: paper, table and lines, and the METHODS_SPEC section it was transcribed from.
        backbone: classifier as printed (``ResNet-50 (224)``).
        recipe: our training recipe closest to the paper's (``augbench.training.RECIPES``).
        protocol: ``few_shot``, ``long_tail``, ``waterbirds`` or ``full_data``.
        statistic: what a cell is (``mean of three trials``).
        trials: number of trials behind each cell, where one number holds for the whole table.
        notes: caveats stated by METHODS_SPEC (inconsistent cells, the Avg convention).
        columns: the cells' columns in the paper's order.
        averages: the printed ``Avg`` columns.
        rows: the printed rows, in the paper's order.
    """

    id: str
    title: str
    source: str
    backbone: str
    recipe: str
    protocol: str
    statistic: str
    trials: int | None
    notes: tuple[str, ...]
    columns: tuple[Column, ...]
    averages: tuple[PublishedAverage, ...]
    rows: tuple[PublishedRow, ...]
    path: Path

    def row(self, method: str) -> PublishedRow:
        """The row whose ``method_id`` or printed name is ``method`` (the first one, in print order)."""
        for row in self.rows:
            if method in (row.method_id, row.method):
                return row
        known = ", ".join(row.method_id or row.method for row in self.rows)
        raise PublishedError(f"published table {self.id!r} has no row {method!r}; rows: {known}")


def list_published() -> list[str]:
    """Ids of the published tables in ``reports/published/``, sorted."""
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.toml"))


def load_published(table_id: str) -> PublishedTable:
    """Load and validate ``reports/published/<table_id>.toml``.

    Raises:
        PublishedError: unknown id (the message lists the available ones) or a malformed file.
    """
    path = PUBLISHED_DIR / f"{table_id}.toml"
    if not path.is_file():
        raise PublishedError(f"unknown published table {table_id!r}; available: "
                             f"{', '.join(list_published()) or '(none)'} (in {PUBLISHED_DIR})")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for key in ("id", "title", "source", "backbone", "recipe", "protocol", "statistic", "columns", "rows"):
        if key not in raw:
            raise PublishedError(f"{path}: needs a {key!r} entry")
    if raw["id"] != path.stem:
        raise PublishedError(f"{path}: id {raw['id']!r} differs from the file name")
    if raw["protocol"] not in PROTOCOLS:
        raise PublishedError(f"{path}: {PROTOCOLS.unknown_message(raw['protocol'])}")
    columns = _columns(raw["columns"], path, "columns")
    averages = tuple(PublishedAverage(a["label"], _columns(a["columns"], path, f"averages {a['label']!r}"))
                     for a in raw.get("averages", []))
    for average in averages:
        if not set(average.columns) <= set(columns):
            raise PublishedError(f"{path}: average {average.label!r} names a column not in 'columns'")
    rows = tuple(_row(r, columns, len(averages), path) for r in raw["rows"])
    return PublishedTable(id=raw["id"], title=raw["title"], source=raw["source"], backbone=raw["backbone"],
                          recipe=raw["recipe"], protocol=raw["protocol"], statistic=raw["statistic"],
                          trials=raw.get("trials"), notes=tuple(raw.get("notes", [])), columns=columns,
                          averages=averages, rows=rows, path=path)


def _columns(items: list[Any], path: Path, where: str) -> tuple[Column, ...]:
    if not all(isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in items):
        raise PublishedError(f"{path}: {where} must be a list of [dataset, setting] string pairs")
    columns = tuple((c[0], c[1]) for c in items)
    if len(set(columns)) != len(columns):
        raise PublishedError(f"{path}: {where} repeats a column")
    return columns


def _row(raw: dict[str, Any], columns: tuple[Column, ...], n_averages: int, path: Path) -> PublishedRow:
    if "method" not in raw:
        raise PublishedError(f"{path}: every [[rows]] entry needs a 'method'")
    method = raw["method"]
    mean, std = raw.get("mean", []), raw.get("std", [None] * len(columns))
    if len(mean) != len(columns) or len(std) != len(columns):
        raise PublishedError(f"{path}: row {method!r} needs one mean (and std, if any) per column "
                             f"({len(columns)})")
    printed = {}
    for key in ("avg", "delta"):
        values = raw.get(key, [None] * n_averages)
        if len(values) != n_averages:
            raise PublishedError(f"{path}: row {method!r}: {key!r} needs one value per average ({n_averages})")
        printed[key] = tuple(values)
    lpips = raw.get("lpips")
    if lpips is not None and (isinstance(lpips, bool) or not isinstance(lpips, (int, float)) or not 0 <= lpips <= 100):
        raise PublishedError(f"{path}: row {method!r}: 'lpips' must be the printed LPIPS in % (a number in [0, 100])")
    return PublishedRow(method=method, method_id=raw.get("method_id"), cells=dict(zip(columns, zip(mean, std))),
                        avg=printed["avg"], delta=printed["delta"], lpips=None if lpips is None else float(lpips))
