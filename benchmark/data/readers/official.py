"""The common base of the official-layout readers, and what several readers share (METHODS_SPEC §8.3).

:class:`OfficialSource` is an :class:`~augbench.data.core.ImageSource` read from a dataset's official
files: it locates the folder (:mod:`augbench.data.readers.layout`), lets the subclass parse the splits
in the order of the official files, and checks every label and the class order against the card.
:func:`torchvision_dataset` and :func:`torchvision_attribute` serve the readers that let torchvision
parse the official files (``augbench.data.readers.oxford``, ``augbench.data.readers.vehicles``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError, ImageSource, Sample
from augbench.data.readers.layout import check_required, help_block, locate_dataset

__all__ = ["IMAGE_SUFFIXES", "OfficialSource", "class_order_mismatch", "open_image", "torchvision_attribute",
           "torchvision_dataset"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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


# --- readers that let torchvision parse the official files -------------------------------------


def torchvision_dataset(card: DatasetCard, build, what: str):
    """Run a torchvision constructor; turn its terse errors into ``DataError`` with the expected layout."""
    try:
        return build()
    except (RuntimeError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(
            f"{card.name}: torchvision could not read {what}: {type(exc).__name__}: {exc}\n\n{help_block(card)}"
        ) from exc


def torchvision_attribute(ds: Any, name: str) -> Any:
    """A private attribute of a torchvision dataset (its parsed file list); a clear error if one was renamed."""
    try:
        return getattr(ds, name)
    except AttributeError as exc:  # pragma: no cover - depends on the torchvision version
        import torchvision

        raise DataError(
            f"torchvision {torchvision.__version__}: {type(ds).__name__} has no attribute {name!r}; the readers "
            f"in augbench.data.readers support torchvision 0.19-0.29."
        ) from exc
