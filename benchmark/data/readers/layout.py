"""Where a dataset lives under the data root, and what to tell the user when it is not there.

A dataset card's ``[layout]`` table names the dataset's folder (``folder``, ``alt_folders``), the files
the official release must have (``required``), its folder tree (``tree``) and how to obtain the data
(``obtain``). The functions here find that folder (``--data-root`` / ``$AUGBENCH_DATA``) and name
every missing file together with the expected tree and how to get the data (USER_NEEDS §2.1-2.3),
before any reader parses a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError

__all__ = ["check_required", "data_status", "dataset_folders", "expected_tree", "help_block", "how_to_obtain",
           "locate_dataset"]


def expected_tree(card: DatasetCard) -> str:
    """The folder tree the card's ``[layout] tree`` documents (empty if the card has none)."""
    return str(card.layout.get("tree", "")).strip("\n")


def how_to_obtain(card: DatasetCard) -> str:
    """The card's instructions for getting the data (``[layout] obtain``)."""
    return str(card.layout.get("obtain", "")).strip()


def help_block(card: DatasetCard) -> str:
    """The expected tree and how to obtain the data, for the end of an error message."""
    parts = []
    tree = expected_tree(card)
    if tree:
        parts.append(f"Expected layout:\n{tree}")
    obtain = how_to_obtain(card)
    if obtain:
        parts.append(f"How to obtain it:\n{obtain}")
    return "\n\n".join(parts)


def dataset_folders(card: DatasetCard) -> list[str]:
    """Folder names accepted under the data root: ``[layout] folder`` then ``alt_folders``."""
    folder = card.layout.get("folder")
    if not folder:
        raise DataError(f"{card.path}: [layout] needs a 'folder' entry (the dataset's folder under the data root)")
    return [str(folder), *[str(f) for f in card.layout.get("alt_folders", [])]]


def _has_markers(folder: Path, card: DatasetCard) -> bool:
    required = [str(r) for r in card.layout.get("required", [])]
    return bool(required) and all((folder / r.rstrip("/")).exists() for r in required)


def locate_dataset(card: DatasetCard, data_root: Path | None) -> Path:
    """The dataset's folder under ``data_root``.

    ``data_root`` may also be the dataset folder itself. When a folder exists but its files sit one
    level deeper (an archive that wraps its content in one more folder), that inner folder is used.

    Raises:
        DataError: no data root was given, it does not exist, or it holds no folder of an accepted
            name. The message shows the expected tree and how to obtain the data.
    """
    names = dataset_folders(card)
    if data_root is None:
        raise DataError(
            f"{card.name}: no data root given. Pass --data-root DIR or set AUGBENCH_DATA=DIR, where DIR holds "
            f"the folder {names[0]!r}.\n\n{help_block(card)}"
        )
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DataError(
            f"{card.name}: the data root {data_root} does not exist or is not a folder. It should hold the "
            f"folder {names[0]!r}.\n\n{help_block(card)}"
        )
    candidates = [data_root / n for n in names]
    if data_root.name in names or _has_markers(data_root, card):
        candidates.insert(0, data_root)
    for folder in candidates:
        if not folder.is_dir():
            continue
        if _has_markers(folder, card) or not card.layout.get("required"):
            return folder
        inner = sorted(p for p in folder.iterdir() if p.is_dir() and _has_markers(p, card))
        if len(inner) == 1:
            return inner[0]
        return folder  # exists but incomplete: check_required names the missing files
    accepted = " or ".join(repr(n) for n in names)
    raise DataError(
        f"{card.name}: no folder {accepted} in the data root {data_root}.\n\n{help_block(card)}"
    )


def _find_elsewhere(root: Path, name: str) -> list[Path]:
    """Files called ``name`` one or two levels around ``root`` (to hint at a misplaced file)."""
    hits: list[Path] = []
    for pattern in (name, f"*/{name}", f"*/*/{name}"):
        hits.extend(sorted(root.glob(pattern)))
    return hits[:3]


def check_required(card: DatasetCard, folder: Path) -> None:
    """Fail naming every file or folder from ``[layout] required`` that is missing under ``folder``.

    Entries ending in ``/`` must be folders. A file of the right name found in a neighbouring folder
    is pointed out (e.g. Stanford Cars' labelled test annotations inside ``devkit/``).
    """
    missing = []
    for entry in card.layout.get("required", []):
        entry = str(entry)
        path = folder / entry.rstrip("/")
        ok = path.is_dir() if entry.endswith("/") else path.is_file()
        if ok:
            continue
        line = f"  missing: {path}" + (" (folder)" if entry.endswith("/") else "")
        found = [p for p in _find_elsewhere(folder, Path(entry.rstrip("/")).name) if p != path]
        if found:
            line += f" -- found {', '.join(str(p) for p in found)}; move it to the expected place"
        missing.append(line)
    if missing:
        raise DataError(
            f"{card.name}: {len(missing)} required file(s) missing in {folder}:\n" + "\n".join(missing)
            + f"\n\n{help_block(card)}"
        )


def data_status(card: DatasetCard, data_root: Path | None) -> dict[str, Any]:
    """Whether ``card``'s data is present (cheap: looks at the layout only, reads no image list)."""
    if card.kind == "embedded":
        return {"present": True, "status": "embedded", "location": "generated by the embedded world"}
    try:
        folder = locate_dataset(card, data_root)
        check_required(card, folder)
    except DataError as exc:
        reason = str(exc).split("\n", 1)[0]
        return {"present": False, "status": "missing", "location": None, "reason": reason}
    return {"present": True, "status": "present", "location": str(folder)}
