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
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError, ImageSource, Sample
from augbench.protocols.subsets import WATERBIRDS_GROUP_NAMES as WATERBIRDS_GROUPS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

WATERBIRDS_SPLITS = {0: "train", 1: "val", 2: "test"}


# --- locating a dataset and explaining what is missing --------------------------------------------


def expected_tree(card: DatasetCard) -> str:
    """The folder tree the card's ``[layout] tree`` documents (empty if the card has none)."""
    return str(card.layout.get("tree", "")).strip("\n")


def how_to_obtain(card: DatasetCard) -> str:
    """The card's instructions for getting the data (``[layout] obtain``)."""
    return str(card.layout.get("obtain", "")).strip()


def _help_block(card: DatasetCard) -> str:
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
            f"the folder {names[0]!r}.\n\n{_help_block(card)}"
        )
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DataError(
            f"{card.name}: the data root {data_root} does not exist or is not a folder. It should hold the "
            f"folder {names[0]!r}.\n\n{_help_block(card)}"
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
        f"{card.name}: no folder {accepted} in the data root {data_root}.\n\n{_help_block(card)}"
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
            + f"\n\n{_help_block(card)}"
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


def open_image(path: Path) -> Image.Image:
    """Decode ``path`` fully and return it as RGB; a missing or corrupt file raises ``DataError`` naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"image file missing: {path}. Re-extract the dataset or run `augbench data verify`.") from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"corrupt or unreadable image: {path} ({exc}). Re-extract or re-download the dataset; "
            f"`augbench data verify <dataset> --check-images` lists every unreadable file."
        ) from exc


def _read_columns(path: Path, ncols: int, what: str) -> Iterator[tuple[int, list[str]]]:
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


def _int(value: str, path: Path, lineno: int, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {value!r}") from exc


def class_order_mismatch(card: DatasetCard, official: Sequence[str], what: str) -> str | None:
    """A message describing how ``official`` differs from the card's class list, or None if identical."""
    expected = list(card.class_names)
    official = list(official)
    if official == expected:
        return None
    if len(official) != len(expected):
        return (
            f"{what} lists {len(official)} classes but the card {card.path} has {len(expected)}. "
            f"The card's class list must be the official list in the official order."
        )
    diffs = [i for i, (a, b) in enumerate(zip(official, expected, strict=True)) if a != b]
    shown = "; ".join(f"index {i}: file has {official[i]!r}, card has {expected[i]!r}" for i in diffs[:3])
    return (
        f"{what} disagrees with the card {card.path} at {len(diffs)} position(s): {shown}. Labels would be "
        f"wrong: check that your copy of the data is the official release, or fix the card's class list."
    )


# --- the common base -----------------------------------------------------------------------------


class OfficialSource(ImageSource):
    """An :class:`ImageSource` read from a dataset's official files under the data root.

    Subclasses implement :meth:`_read`, returning the splits and the file of every image id, and
    :meth:`official_class_names` when the release ships a class list to check the card against.

    Attributes:
        root: the dataset's folder (e.g. ``<data-root>/CUB_200_2011``).
        class_check: one line saying what the class order was checked against.
        torchvision_folder: for torchvision-backed readers, the folder name torchvision insists on.
    """

    torchvision_folder: str | None = None

    def __init__(self, card: DatasetCard, data_root: Path | None):
        super().__init__(card)
        self.data_root = Path(data_root) if data_root is not None else None
        self.root = locate_dataset(card, self.data_root)
        if self.torchvision_folder and self.root.name != self.torchvision_folder:
            raise DataError(
                f"{card.name}: found the data in {self.root}, but torchvision reads it only from a folder named "
                f"{self.torchvision_folder!r}. Rename the folder (or link it) to {self.root.parent / self.torchvision_folder}."
            )
        check_required(card, self.root)
        self._splits: dict[str, list[Sample]] = {}
        self._paths: dict[str, Path] = {}
        self._read()
        self._check_labels()
        self.class_check = self._check_class_order()

    # subclass hooks
    def _read(self) -> None:
        """Fill ``self._splits`` (split -> samples in official order) and ``self._paths`` (id -> file)."""
        raise NotImplementedError

    def official_class_names(self) -> list[str] | None:
        """Class names from the release's own class list, in label order (None if it ships none)."""
        return None

    def official_class_list_name(self) -> str:
        """The file that :meth:`official_class_names` reads (for messages)."""
        return "the official class list"

    def image_dirs(self) -> list[Path]:
        """Folders holding the images (scanned by ``verify`` for files no split lists)."""
        return []

    # checks
    def _check_labels(self) -> None:
        for split, samples in self._splits.items():
            bad = [s for s in samples if not 0 <= s.label < self.num_classes]
            if bad:
                raise DataError(
                    f"{self.card.name}: split {split!r} has {len(bad)} image(s) with a label outside "
                    f"0..{self.num_classes - 1} (e.g. {bad[0].image_id!r} -> {bad[0].label}); the card has "
                    f"{self.num_classes} classes."
                )

    def _check_class_order(self) -> str:
        official = self.official_class_names()
        what = f"{self.official_class_list_name()} ({self.root})"
        if official is None:
            return f"no official class-name file in this release; {self.num_classes} classes taken from the card"
        problem = class_order_mismatch(self.card, official, what)
        if problem:
            raise DataError(f"{self.card.name}: class order check failed. {problem}")
        return f"class order matches {self.official_class_list_name()} ({len(official)} classes)"

    # ImageSource
    def split_names(self) -> list[str]:
        return list(self._splits)

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` in the order of the official files."""
        self._check_split(split)
        return list(self._splits[split])

    def image_path(self, image_id: str) -> Path:
        """The file of ``image_id``."""
        try:
            return self._paths[image_id]
        except KeyError:
            raise DataError(f"{self.card.name}: unknown image id {image_id!r}") from None

    def image_paths(self) -> dict[str, Path]:
        """Every listed image id and its file."""
        return dict(self._paths)

    def load_image(self, image_id: str) -> Image.Image:
        """The RGB image ``image_id``; a missing or corrupt file raises ``DataError`` naming it."""
        return open_image(self.image_path(image_id))

    def _add(self, split: str, image_id: str, label: int, path: Path, attrs: dict[str, Any] | None = None) -> None:
        previous = self._paths.get(image_id)
        if previous is not None and previous != path:
            raise DataError(f"{self.card.name}: image id {image_id!r} names two files: {previous} and {path}")
        self._paths[image_id] = path
        self._splits.setdefault(split, []).append(Sample(image_id, int(label), attrs or {}))


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
            (lineno, _int(cid, root / "classes.txt", lineno, "class id"), name)
            for lineno, (cid, name) in _read_columns(root / "classes.txt", 2, "<class_id> <name>")
        ]
        for index, (lineno, cid, _) in enumerate(self._classes, 1):
            if cid != index:
                raise DataError(f"{root / 'classes.txt'}:{lineno}: class ids must run 1, 2, ... in order; got {cid}")
        images = {
            _int(i, root / "images.txt", n, "image id"): (n, path)
            for n, (i, path) in _read_columns(root / "images.txt", 2, "<image_id> <relative path>")
        }
        labels = {
            _int(i, root / "image_class_labels.txt", n, "image id"): _int(c, root / "image_class_labels.txt", n, "class id")
            for n, (i, c) in _read_columns(root / "image_class_labels.txt", 2, "<image_id> <class_id>")
        }
        flags = {
            _int(i, root / "train_test_split.txt", n, "image id"): f
            for n, (i, f) in _read_columns(root / "train_test_split.txt", 2, "<image_id> <is_training_image>")
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


# --- torchvision-backed readers ---------------------------------------------------------------------


def _torchvision_dataset(card: DatasetCard, build, what: str):
    """Run a torchvision constructor; turn its terse errors into ``DataError`` with the expected layout."""
    try:
        return build()
    except (RuntimeError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(
            f"{card.name}: torchvision could not read {what}: {type(exc).__name__}: {exc}\n\n{_help_block(card)}"
        ) from exc


def _private(ds: Any, name: str) -> Any:
    try:
        return getattr(ds, name)
    except AttributeError as exc:  # pragma: no cover - depends on the torchvision version
        import torchvision

        raise DataError(
            f"torchvision {torchvision.__version__}: {type(ds).__name__} has no attribute {name!r}; the readers "
            f"in benchmark/data/readers.py support torchvision 0.19-0.29."
        ) from exc


class FlowersSource(OfficialSource):
    """Oxford Flowers-102 through ``torchvision.datasets.Flowers102`` (``download=False``).

    Splits ``train`` / ``val`` / ``test`` from ``setid.mat`` (``trnid`` / ``valid`` / ``tstid``, in
    file order), ``trainval`` = train + val, and ``all`` = every image ``image_00001`` ... in file order
    with its ``imagelabels.mat`` label (the start of Diff-Mix's 50% split, METHODS_SPEC §8.1). Image id
    = the file stem. torchvision's md5 check of the two ``.mat`` files is left to ``augbench data
    verify`` (which checks the same md5s from the card), so that copies and fixtures can be read.
    """

    torchvision_folder = "flowers-102"

    def _read(self) -> None:
        import numpy as np
        from scipy.io import loadmat
        from torchvision.datasets import Flowers102

        class _Flowers102(Flowers102):
            def _check_integrity(self) -> bool:  # existence only; md5s are checked by `verify`
                return self._images_folder.is_dir() and all(
                    (self._base_folder / name).is_file() for name in ("imagelabels.mat", "setid.mat")
                )

        parent = self.root.parent
        for split in ("train", "val", "test"):
            ds = _torchvision_dataset(
                self.card, lambda split=split: _Flowers102(parent, split=split, download=False), "setid.mat/imagelabels.mat"
            )
            for path, label in zip(_private(ds, "_image_files"), _private(ds, "_labels"), strict=True):
                path = Path(path)
                self._add(split, path.stem, label, path)
        self._splits["trainval"] = self._splits["train"] + self._splits["val"]
        try:
            labels = loadmat(self.root / "imagelabels.mat", squeeze_me=True)["labels"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{self.root / 'imagelabels.mat'}: cannot read key 'labels': {exc}") from exc
        labels = [int(v) for v in np.atleast_1d(labels).tolist()]
        for number, label in enumerate(labels, 1):
            stem = f"image_{number:05d}"
            self._add("all", stem, label - 1, self.root / "jpg" / f"{stem}.jpg")
        self._max_label = max(labels) if labels else 0

    def _check_class_order(self) -> str:
        if self._max_label > self.num_classes:
            raise DataError(
                f"{self.card.name}: imagelabels.mat uses labels up to {self._max_label}, the card has "
                f"{self.num_classes} classes"
            )
        return (
            f"no official class-name file in this release; labels 1..{self._max_label} of imagelabels.mat fit the "
            f"card's {self.num_classes} names (order as in Diff-Mix / NoiseCutMix)"
        )

    def image_dirs(self) -> list[Path]:
        return [self.root / "jpg"]


class AircraftSource(OfficialSource):
    """FGVC-Aircraft (variant level) through ``torchvision.datasets.FGVCAircraft`` (``download=False``).

    Splits ``train``, ``val``, ``trainval``, ``test`` from ``images_variant_<split>.txt`` in file
    order; label = index of the variant in ``variants.txt``; image id = the image name.
    """

    torchvision_folder = "fgvc-aircraft-2013b"

    def _read(self) -> None:
        from torchvision.datasets import FGVCAircraft

        parent = self.root.parent
        self._variants: list[str] | None = None
        for split in ("train", "val", "trainval", "test"):
            ds = _torchvision_dataset(
                self.card,
                lambda split=split: FGVCAircraft(parent, split=split, annotation_level="variant", download=False),
                f"data/images_variant_{split}.txt",
            )
            self._variants = list(ds.classes)
            for path, label in zip(_private(ds, "_image_files"), _private(ds, "_labels"), strict=True):
                path = Path(path)
                self._add(split, path.stem, label, path)

    def official_class_names(self) -> list[str] | None:
        return self._variants

    def official_class_list_name(self) -> str:
        return "data/variants.txt"

    def image_dirs(self) -> list[Path]:
        return [self.root / "data" / "images"]


class PetsSource(OfficialSource):
    """Oxford-IIIT Pets through ``torchvision.datasets.OxfordIIITPet`` (``download=False``).

    Splits ``trainval`` and ``test`` from ``annotations/{trainval,test}.txt`` in file order; label =
    CLASS-ID - 1; image id = the image name. The class order is checked by deriving each class's breed
    name from its image names (``Abyssinian_100`` -> ``Abyssinian``).
    """

    torchvision_folder = "oxford-iiit-pet"

    def _read(self) -> None:
        from torchvision.datasets import OxfordIIITPet

        parent = self.root.parent
        self._breeds: dict[int, str] = {}
        for split in ("trainval", "test"):
            ds = _torchvision_dataset(
                self.card,
                lambda split=split: OxfordIIITPet(parent, split=split, target_types="category", download=False),
                f"annotations/{split}.txt",
            )
            for path, label in zip(_private(ds, "_images"), _private(ds, "_labels"), strict=True):
                path = Path(path)
                breed = path.stem.rsplit("_", 1)[0]
                known = self._breeds.setdefault(label, breed)
                if known != breed:
                    raise DataError(
                        f"{self.root / 'annotations' / (split + '.txt')}: class id {label + 1} is used for "
                        f"{known!r} and {breed!r} images"
                    )
                self._add(split, path.stem, label, path)

    def _check_class_order(self) -> str:
        bad = [
            (label, breed) for label, breed in sorted(self._breeds.items())
            if label >= self.num_classes or breed != self.card.class_names[label]
        ]
        if bad:
            label, breed = bad[0]
            card_name = self.card.class_names[label] if label < self.num_classes else "(none)"
            raise DataError(
                f"{self.card.name}: class order check failed: {len(bad)} class id(s) in annotations/*.txt name a "
                f"different breed than the card {self.card.path} (e.g. class id {label + 1}: images of "
                f"{breed!r}, card {card_name!r})."
            )
        return f"breed names derived from the image names match the card ({len(self._breeds)} classes seen)"

    def image_dirs(self) -> list[Path]:
        return [self.root / "images"]


class CarsSource(OfficialSource):
    """Stanford Cars through ``torchvision.datasets.StanfordCars`` (``download=False``).

    Splits ``train`` (``devkit/cars_train_annos.mat``) and ``test``
    (``cars_test_annos_withlabels.mat``), in annotation order; label = ``class`` - 1; image id =
    ``cars_train/<fname>`` or ``cars_test/<fname>``; class names from ``devkit/cars_meta.mat``.
    """

    torchvision_folder = "stanford_cars"

    def _read(self) -> None:
        from torchvision.datasets import StanfordCars

        parent = self.root.parent
        self._meta: list[str] | None = None
        for split, folder in (("train", "cars_train"), ("test", "cars_test")):
            ds = _torchvision_dataset(
                self.card, lambda split=split: StanfordCars(parent, split=split, download=False),
                "devkit/cars_meta.mat and the annotation .mat files",
            )
            self._meta = [str(c) for c in ds.classes]
            for path, label in _private(ds, "_samples"):
                path = Path(path)
                self._add(split, f"{folder}/{path.name}", int(label), path)

    def official_class_names(self) -> list[str] | None:
        return self._meta

    def official_class_list_name(self) -> str:
        return "devkit/cars_meta.mat"

    def image_dirs(self) -> list[Path]:
        return [self.root / "cars_train", self.root / "cars_test"]
