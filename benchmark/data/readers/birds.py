"""Readers of the two bird datasets: CUB-200-2011 and Waterbirds (METHODS_SPEC §6.3, §8.3).

Both are parsed here without torchvision: CUB-200-2011 from its whitespace-separated text files,
Waterbirds (group_DRO / WILDS release, CUB birds pasted onto land and water backgrounds) from its
``metadata.csv``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from augbench.data.core import DataError
from augbench.data.readers.official import OfficialSource
from augbench.protocols.waterbirds import WATERBIRDS_GROUP_NAMES as WATERBIRDS_GROUPS

__all__ = ["WATERBIRDS_SPLITS", "CUBSource", "WaterbirdsSource", "parse_int", "read_columns"]

log = logging.getLogger(__name__)

WATERBIRDS_SPLITS = {0: "train", 1: "val", 2: "test"}


def read_columns(path: Path, ncols: int, what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` of a whitespace-separated text file with ``ncols`` columns.

    The last column takes the rest of the line (names may contain spaces). Blank lines are skipped.
    """
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(None, ncols - 1)
            if len(fields) != ncols:
                raise DataError(
                    f"{path}:{lineno}: expected {ncols} columns ({what}), got {len(fields)}: {line!r}"
                )
            yield lineno, fields


def parse_int(value: str, path: Path, lineno: int, what: str) -> int:
    """``int(value)``; a ``DataError`` naming the file, line and field when it is not an integer."""
    try:
        return int(value)
    except ValueError as exc:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {value!r}") from exc



# --- CUB-200-2011 ----------------------------------------------------------------------------------


class CUBSource(OfficialSource):
    """CUB-200-2011 from ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt`` and ``classes.txt``.

    Splits ``train`` (is_training_image = 1) and ``test`` (0), each in ``images.txt`` order. Image id =
    the relative path from ``images.txt``; label = class id - 1; ``attrs["cub_id"]`` = the numeric image
    id (METHODS_SPEC §8.3).
    """

    def _read(self) -> None:
        root = self.root
        self._classes = [
            (lineno, parse_int(cid, root / "classes.txt", lineno, "class id"), name)
            for lineno, (cid, name) in read_columns(root / "classes.txt", 2, "<class_id> <name>")
        ]
        for index, (lineno, cid, _) in enumerate(self._classes, 1):
            if cid != index:
                raise DataError(f"{root / 'classes.txt'}:{lineno}: class ids must run 1, 2, ... in order; got {cid}")
        images = {
            parse_int(i, root / "images.txt", n, "image id"): (n, path)
            for n, (i, path) in read_columns(root / "images.txt", 2, "<image_id> <relative path>")
        }
        label_file = root / "image_class_labels.txt"
        labels = {
            parse_int(i, label_file, n, "image id"): parse_int(c, label_file, n, "class id")
            for n, (i, c) in read_columns(label_file, 2, "<image_id> <class_id>")
        }
        flags = {
            parse_int(i, root / "train_test_split.txt", n, "image id"): f
            for n, (i, f) in read_columns(root / "train_test_split.txt", 2, "<image_id> <is_training_image>")
        }
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", flags)):
            missing = sorted(set(images) - set(table))
            extra = sorted(set(table) - set(images))
            if missing or extra:
                raise DataError(
                    f"{root / name} does not match images.txt: "
                    + (f"{len(missing)} image id(s) missing (e.g. {missing[:5]})" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"{len(extra)} unknown image id(s) (e.g. {extra[:5]})" if extra else "")
                )
        names = [name for _, _, name in self._classes]
        for image_id in sorted(images):  # images.txt order is ascending image id
            lineno, rel = images[image_id]
            cls = labels[image_id]
            if not 1 <= cls <= len(names):
                raise DataError(f"{root / 'image_class_labels.txt'}: image {image_id} has class {cls}, not in 1..{len(names)}")
            folder = rel.split("/", 1)[0]
            if folder != names[cls - 1]:
                raise DataError(
                    f"{root / 'images.txt'}:{lineno}: {rel!r} is in folder {folder!r} but image_class_labels.txt "
                    f"gives class {cls} ({names[cls - 1]!r})"
                )
            flag = flags[image_id]
            if flag not in ("0", "1"):
                raise DataError(f"{root / 'train_test_split.txt'}: image {image_id} has flag {flag!r}, expected 1 or 0")
            split = "train" if flag == "1" else "test"
            self._add(split, rel, cls - 1, root / "images" / rel, {"cub_id": image_id})
        for split in ("train", "test"):
            self._splits.setdefault(split, [])

    def official_class_names(self) -> list[str]:
        return [name for _, _, name in self._classes]

    def official_class_list_name(self) -> str:
        return "classes.txt"

    def image_dirs(self) -> list[Path]:
        return [self.root / "images"]


# --- Waterbirds -----------------------------------------------------------------------------------


class WaterbirdsSource(OfficialSource):
    """Waterbirds from ``metadata.csv`` (group_DRO / WILDS release).

    Splits ``train`` / ``val`` / ``test`` from the ``split`` column (0 / 1 / 2), in ``metadata.csv``
    order. Image id = ``img_filename``; label = the CUB species, ``int(img_filename.split('.')[0]) - 1``
    (METHODS_SPEC §6.3); ``attrs``: ``y`` (1 = waterbird), ``place`` (1 = water background),
    ``group`` = ``f"{y}{place}"`` and ``img_id``. The four group counts of every split are logged at
    load time and returned by :meth:`group_counts` (USER_NEEDS §2.3).
    """

    REQUIRED_COLUMNS = ("img_filename", "y", "split", "place")

    def _read(self) -> None:
        path = self.root / "metadata.csv"
        self._species_folders: dict[int, str] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in self.REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected img_id,img_filename,y,split,place,"
                    f"place_filename (group_DRO / WILDS metadata.csv)"
                )
            for row_number, row in enumerate(reader, 2):
                rel = row["img_filename"]
                folder = rel.split("/", 1)[0]
                prefix = rel.split(".", 1)[0]
                try:
                    label = int(prefix) - 1
                    y, place, split_code = int(row["y"]), int(row["place"]), int(row["split"])
                except ValueError as exc:
                    raise DataError(f"{path}:{row_number}: cannot parse row {row!r}: {exc}") from exc
                if split_code not in WATERBIRDS_SPLITS or y not in (0, 1) or place not in (0, 1):
                    raise DataError(
                        f"{path}:{row_number}: split must be 0/1/2 and y, place 0/1; got split={split_code}, "
                        f"y={y}, place={place}"
                    )
                known = self._species_folders.setdefault(label, folder)
                if known != folder:
                    raise DataError(f"{path}:{row_number}: species {label + 1} appears as {known!r} and {folder!r}")
                attrs = {"y": y, "place": place, "group": f"{y}{place}"}
                if row.get("img_id"):
                    attrs["img_id"] = row["img_id"]
                self._add(WATERBIRDS_SPLITS[split_code], rel, label, self.root / rel, attrs)
        for split in WATERBIRDS_SPLITS.values():
            self._splits.setdefault(split, [])
        for split in self._splits:
            counts = self.group_counts(split)
            log.info(
                "%s %s: %s", self.card.id, split,
                ", ".join(f"{WATERBIRDS_GROUPS[g]} {n}" for g, n in counts.items()),
            )

    def group_counts(self, split: str) -> dict[str, int]:
        """Images per (y, place) group of ``split``, keys ``"00"``, ``"01"``, ``"10"``, ``"11"``."""
        counts = dict.fromkeys(WATERBIRDS_GROUPS, 0)
        for s in self.samples(split):
            counts[s.attrs["group"]] += 1
        return counts

    def official_class_names(self) -> list[str] | None:
        """Species folder names seen in ``metadata.csv`` (checked only for the species present)."""
        return None

    def _check_class_order(self) -> str:
        bad = [
            (label, folder) for label, folder in sorted(self._species_folders.items())
            if label >= self.num_classes or folder != self.card.class_names[label]
        ]
        if bad:
            label, folder = bad[0]
            card_name = self.card.class_names[label] if label < self.num_classes else "(none)"
            raise DataError(
                f"{self.card.name}: class order check failed: {len(bad)} species folder(s) in metadata.csv do not "
                f"match the card {self.card.path} (e.g. label {label}: folder {folder!r}, card {card_name!r})."
            )
        return f"species folders in metadata.csv match the CUB class list ({len(self._species_folders)} species seen)"

    def image_dirs(self) -> list[Path]:
        return sorted({self.root / folder for folder in self._species_folders.values()})
