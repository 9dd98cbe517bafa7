"""Tiny copies of the official dataset layouts (METHODS_SPEC §8.3), written by the tests.

Each ``make_*`` function writes a few images per class in the real file formats (text lists, the
``.mat`` files torchvision reads, Waterbirds' ``metadata.csv``) under ``data_root`` and returns the
dataset folder. Official class-list files are written with the real cards' full class lists, so the
real cards load these copies (and ``verify`` then fails on the counts); :func:`small_card` writes a
card with only the classes and counts of a fixture, for which ``verify`` passes.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from augbench.data.cards import load_card

CHECKOUT_DATASETS = Path(__file__).resolve().parent.parent / "datasets"


def real_classes(dataset_id: str) -> list[str]:
    """The class list of the checkout's card ``dataset_id``."""
    return list(load_card(dataset_id, CHECKOUT_DATASETS).class_names)


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (6, 6)) -> Path:
    """A tiny JPEG with deterministic content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")
    return path


def corrupt(path: Path) -> Path:
    """Overwrite an image with bytes that are not an image."""
    path.write_bytes(b"this is not a jpeg")
    return path


# --- CUB-200-2011 ----------------------------------------------------------------------------------


def make_cub(
    data_root: Path,
    n_classes: int = 3,
    train_per_class: int = 3,
    test_per_class: int = 2,
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] = (6, 6),
) -> Path:
    """``CUB_200_2011/`` with ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``.

    Images of a class alternate train/test flags, the way the official split interleaves them;
    ``image_size`` (width, height) of every JPEG (a rehearsal wants realistic sizes, tests the smallest).
    """
    names = list(class_names or real_classes("cub"))
    root = data_root / "CUB_200_2011"
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, labels, flags = [], [], []
    image_id = 0
    for c in range(n_classes):
        flags_c = [1] * train_per_class + [0] * test_per_class
        flags_c = flags_c[::2] + flags_c[1::2]  # interleave
        for j, flag in enumerate(flags_c):
            image_id += 1
            species = names[c].split(".", 1)[-1]
            rel = f"{names[c]}/{species}_{j + 1:04d}_{1000 + image_id}.jpg"
            write_jpeg(root / "images" / rel, image_id, image_size)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c + 1}")
            flags.append(f"{image_id} {flag}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(flags) + "\n")
    (root / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, 1)))
    w, h = image_size
    (root / "bounding_boxes.txt").write_text("".join(f"{i} 0.0 0.0 {w:.1f} {h:.1f}\n" for i in range(1, image_id + 1)))
    return root


# --- Waterbirds -----------------------------------------------------------------------------------

# (label, y): two waterbird species (albatrosses, y = 1) and two landbird species (y = 0).
WATERBIRDS_SPECIES = ((0, 1), (1, 1), (12, 0), (13, 0))


def make_waterbirds(
    data_root: Path,
    per_species_split: dict[int, int] | None = None,
    folder: str = "waterbird_complete95_forest2water2",
    species: Sequence[tuple[int, int]] = WATERBIRDS_SPECIES,
) -> tuple[Path, dict[str, dict[str, int]]]:
    """``metadata.csv`` plus species folders; places alternate land/water within each species.

    Returns:
        The dataset folder and the expected group counts ``{split: {"00": n, ...}}``.
    """
    per_split = per_species_split or {0: 4, 1: 2, 2: 4}
    names = real_classes("waterbirds")
    root = data_root / folder
    root.mkdir(parents=True, exist_ok=True)
    split_names = {0: "train", 1: "val", 2: "test"}
    groups = {name: dict.fromkeys(("00", "01", "10", "11"), 0) for name in split_names.values()}
    rows = []
    img_id = 0
    for split, n in per_split.items():
        for label, y in species:
            for j in range(n):
                img_id += 1
                place = j % 2
                species_name = names[label].split(".", 1)[1]
                rel = f"{names[label]}/{species_name}_{img_id:04d}_{j}.jpg"
                write_jpeg(root / rel, 5000 + img_id)
                rows.append({"img_id": img_id, "img_filename": rel, "y": y, "split": split, "place": place,
                             "place_filename": f"/b/bamboo_forest/{j:08d}.jpg"})
                groups[split_names[split]][f"{y}{place}"] += 1
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["img_id", "img_filename", "y", "split", "place", "place_filename"])
        writer.writeheader()
        writer.writerows(rows)
    return root, groups


# --- FGVC-Aircraft ---------------------------------------------------------------------------------


def make_aircraft(
    data_root: Path,
    n_classes: int = 3,
    per_split: dict[str, int] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """``fgvc-aircraft-2013b/data/`` with ``variants.txt`` and ``images_variant_{train,val,trainval,test}.txt``."""
    per_split = per_split or {"train": 2, "val": 1, "test": 2}
    names = list(class_names or real_classes("aircraft"))
    data = data_root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{n}\n" for n in names))
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    number = 1000000
    for split, n in per_split.items():
        for _ in range(n):
            for c in range(n_classes):  # class-interleaved, like the official lists
                number += 7
                write_jpeg(data / "images" / f"{number:07d}.jpg", number)
                lines[split].append(f"{number:07d} {names[c]}")
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{r}\n" for r in rows))
    (data / "images_variant_trainval.txt").write_text("".join(f"{r}\n" for r in lines["train"] + lines["val"]))
    return data.parent


# --- Oxford-IIIT Pets ------------------------------------------------------------------------------


def make_pets(
    data_root: Path,
    n_classes: int = 3,
    trainval_per_class: int = 3,
    test_per_class: int = 2,
    class_names: Sequence[str] | None = None,
) -> Path:
    """``oxford-iiit-pet/`` with ``images/<Breed>_<n>.jpg`` and ``annotations/{trainval,test,list}.txt``."""
    names = list(class_names or real_classes("pets"))
    root = data_root / "oxford-iiit-pet"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {"trainval": [], "test": []}
    for c in range(n_classes):
        species = 1 if names[c][0].isupper() else 2
        for j in range(trainval_per_class + test_per_class):
            stem = f"{names[c]}_{j + 1}"
            write_jpeg(root / "images" / f"{stem}.jpg", 100 * c + j)
            split = "trainval" if j < trainval_per_class else "test"
            files[split].append(f"{stem} {c + 1} {species} {c + 1}")
    for split, rows in files.items():
        (root / "annotations" / f"{split}.txt").write_text("".join(f"{r}\n" for r in rows))
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
    (root / "annotations" / "list.txt").write_text(header + "".join(f"{r}\n" for r in files["trainval"] + files["test"]))
    return root


# --- Flowers-102 ------------------------------------------------------------------------------------


def make_flowers(data_root: Path, n_classes: int = 3, per_class: int = 6) -> tuple[Path, list[int]]:
    """``flowers-102/`` with ``jpg/image_NNNNN.jpg``, ``imagelabels.mat`` and ``setid.mat`` (scipy.io.savemat).

    Labels cycle through the classes in file order; per class, the first third of its images goes to
    ``trnid``, the second to ``valid``, the rest to ``tstid``.

    Returns:
        The folder and the 1-based labels in file order.
    """
    from scipy.io import savemat

    root = data_root / "flowers-102"
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    n = n_classes * per_class
    labels = [(i % n_classes) + 1 for i in range(n)]
    for number in range(1, n + 1):
        write_jpeg(root / "jpg" / f"image_{number:05d}.jpg", number)
    seen = dict.fromkeys(range(1, n_classes + 1), 0)
    ids: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    third = max(1, per_class // 3)
    for number, label in enumerate(labels, 1):
        k = seen[label]
        seen[label] += 1
        key = "trnid" if k < third else "valid" if k < 2 * third else "tstid"
        ids[key].append(number)
    savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(root / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})
    return root, labels


# --- Stanford Cars ----------------------------------------------------------------------------------


def _cars_annotations(rows: list[tuple[int, str]]) -> np.ndarray:
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    arr = np.zeros((1, len(rows)), dtype=dtype)
    for i, (cls, fname) in enumerate(rows):
        arr[0, i] = (np.uint8(1), np.uint8(1), np.uint8(5), np.uint8(5), np.uint8(cls), fname)
    return arr


def make_cars(
    data_root: Path,
    n_classes: int = 3,
    train_per_class: int = 2,
    test_per_class: int = 2,
    class_names: Sequence[str] | None = None,
    test_annos_in_devkit: bool = False,
) -> Path:
    """``stanford_cars/`` as torchvision reads it: ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``,
    ``cars_test_annos_withlabels.mat`` and the two image folders (files ``00001.jpg`` ... in each)."""
    from scipy.io import savemat

    names = list(class_names or real_classes("cars"))
    root = data_root / "stanford_cars"
    (root / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": np.array([names], dtype=object)})
    for folder, per_class, annos in (
        ("cars_train", train_per_class, root / "devkit" / "cars_train_annos.mat"),
        ("cars_test", test_per_class,
         root / ("devkit" if test_annos_in_devkit else ".") / "cars_test_annos_withlabels.mat"),
    ):
        rows = []
        number = 0
        for _ in range(per_class):
            for c in range(n_classes):
                number += 1
                fname = f"{number:05d}.jpg"
                write_jpeg(root / folder / fname, 300 * c + number + (0 if folder == "cars_train" else 7))
                rows.append((c + 1, fname))
        savemat(annos, {"annotations": _cars_annotations(rows)})
    return root


# --- cards ------------------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and not key.isdigit() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A minimal TOML writer for cards: scalars, lists, tables and arrays of tables."""
    lines = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
    if prefix and scalars:
        lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
    lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(dump_toml(v, (*prefix, k)))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append("[[" + ".".join(_toml_key(p) for p in (*prefix, k)) + "]]")
                lines.extend(f"{_toml_key(ik)} = {_toml_value(iv)}" for ik, iv in item.items())
    return "\n".join(lines) + "\n"


def small_card(
    cards_dir: Path,
    dataset_id: str,
    n_classes: int,
    splits: dict[str, int],
    downloads: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> Path:
    """Write ``cards_dir/<dataset_id>.toml``: the real card restricted to its first ``n_classes`` classes.

    ``splits`` replaces ``[splits]``; ``downloads`` replaces ``[[download]]`` (default: none, so no
    checksum is expected); other keyword arguments replace whole sections (e.g. ``waterbirds=...``).
    """
    real = load_card(dataset_id, CHECKOUT_DATASETS)
    raw = {k: v for k, v in real.raw.items() if k not in ("classes", "splits", "download")}
    raw["dataset"] = {**raw["dataset"], "num_classes": n_classes}
    raw["classes"] = {"names": list(real.class_names[:n_classes]),
                      "strip_numeric_prefix": real.strip_numeric_prefix}
    raw["splits"] = dict(splits)
    raw.update(sections)
    if downloads:
        raw["download"] = downloads
    cards_dir.mkdir(parents=True, exist_ok=True)
    path = cards_dir / f"{dataset_id}.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


def tar_gz(folder: Path, archive: Path, arcname: str) -> Path:
    """Pack ``folder`` as ``arcname/`` into a .tar.gz (for fetch tests with file:// URLs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
    archive.write_bytes(buf.getvalue())
    return archive
