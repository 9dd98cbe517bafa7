"""Readers of the two vehicle datasets: FGVC-Aircraft and Stanford Cars (METHODS_SPEC §8.3).

torchvision's ``FGVCAircraft`` and ``StanfordCars`` read the official files faithfully, so they do the
parsing, always with ``download=False``; the class order is checked against the release's own class
list (``data/variants.txt``, ``devkit/cars_meta.mat``).
"""

from __future__ import annotations

from pathlib import Path

from augbench.data.readers.official import OfficialSource, torchvision_attribute, torchvision_dataset

__all__ = ["AircraftSource", "CarsSource"]


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
            ds = torchvision_dataset(
                self.card,
                lambda split=split: FGVCAircraft(parent, split=split, annotation_level="variant", download=False),
                f"data/images_variant_{split}.txt",
            )
            self._variants = list(ds.classes)
            files, labels = torchvision_attribute(ds, "_image_files"), torchvision_attribute(ds, "_labels")
            for path, label in zip(files, labels, strict=True):
                path = Path(path)
                self._add(split, path.stem, label, path)

    def official_class_names(self) -> list[str] | None:
        return self._variants

    def official_class_list_name(self) -> str:
        return "data/variants.txt"

    def image_dirs(self) -> list[Path]:
        return [self.root / "data" / "images"]



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
            ds = torchvision_dataset(
                self.card, lambda split=split: StanfordCars(parent, split=split, download=False),
                "devkit/cars_meta.mat and the annotation .mat files",
            )
            self._meta = [str(c) for c in ds.classes]
            for path, label in torchvision_attribute(ds, "_samples"):
                path = Path(path)
                self._add(split, f"{folder}/{path.name}", int(label), path)

    def official_class_names(self) -> list[str] | None:
        return self._meta

    def official_class_list_name(self) -> str:
        return "devkit/cars_meta.mat"

    def image_dirs(self) -> list[Path]:
        return [self.root / "cars_train", self.root / "cars_test"]
