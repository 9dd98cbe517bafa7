"""Readers of the two Oxford VGG datasets: Oxford Flowers-102 and Oxford-IIIT Pets (METHODS_SPEC §8.3).

torchvision's ``Flowers102`` and ``OxfordIIITPet`` read the official files faithfully, so they do the
parsing, always with ``download=False``; these readers add the class-order check and the split names.
"""

from __future__ import annotations

from pathlib import Path

from augbench.data.core import DataError
from augbench.data.readers.official import OfficialSource, torchvision_attribute, torchvision_dataset

__all__ = ["FlowersSource", "PetsSource"]


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
            ds = torchvision_dataset(
                self.card, lambda split=split: _Flowers102(parent, split=split, download=False), "setid.mat/imagelabels.mat"
            )
            files, labels = torchvision_attribute(ds, "_image_files"), torchvision_attribute(ds, "_labels")
            for path, label in zip(files, labels, strict=True):
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
            ds = torchvision_dataset(
                self.card,
                lambda split=split: OxfordIIITPet(parent, split=split, target_types="category", download=False),
                f"annotations/{split}.txt",
            )
            files, labels = torchvision_attribute(ds, "_images"), torchvision_attribute(ds, "_labels")
            for path, label in zip(files, labels, strict=True):
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
