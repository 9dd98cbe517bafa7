"""Loading a synthetic set for training, with the method's label rule (METHODS_SPEC §3.7, §4).

A set is stored as the generator wrote it (``augbench.synthetic.generate``): normalised labels plus, for
images edited from a source of another class, the mixing metadata ``mix = {a, b, s}`` (source class,
target class, strength or λ). How the labels enter training is decided at load time, as the papers'
code does it, by the ``labels`` rule of the cell's ``TrainingIntegration``:

* ``as_generated`` — the stored label;
* ``hard`` — one-hot of the target class (§4: per-class methods train with hard labels);
* ``diff_mix`` — ``sigma * [(1 - s**gamma) e_a + s**gamma e_b]`` (§3.7, DM ``dataset/base.py``).

The target class of every image is passed on as ``SyntheticSet.classes``, so class-conditional
replacement (§4 (b)-(d')) draws by the class the image was generated *for*.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class SyntheticLabelError(ValueError):
    """A synthetic set's rows cannot carry the requested label rule."""


def label_vector(row: dict[str, Any], index: dict[str, int], rule: str, gamma: float = 0.8,
                 sigma: float = 1.0) -> np.ndarray:
    """The training label of one manifest row under ``rule`` (see the module docstring)."""
    vec = np.zeros(len(index), dtype=np.float32)
    if rule == "as_generated":
        for name, p in row["label"].items():
            vec[index[name]] = p
        return vec
    if rule == "hard":
        vec[index[target_class(row)]] = 1.0
        return vec
    if rule == "diff_mix":
        mix = row.get("mix")
        if not mix:
            raise SyntheticLabelError(f"row {row.get('file')}: the diff_mix label rule needs mixing metadata "
                                      "(mix = {a, b, s}); this method's rows have none — use labels = 'hard' or "
                                      "'as_generated'")
        return diff_mix_label(index[mix["a"]], index[mix["b"]], float(mix["s"]), len(index), gamma, sigma)
    raise SyntheticLabelError(f"unknown label rule {rule!r}")


def diff_mix_label(source: int, target: int, strength: float, num_classes: int, gamma: float = 0.8,
                   sigma: float = 1.0) -> np.ndarray:
    """``sigma * [(1 - s**gamma) e_a + s**gamma e_b]`` (METHODS_SPEC §3.7; DM ``dataset/base.py:224-237``).

    ``a`` = source (reference image) class, ``b`` = target (prompt) class, ``s`` = strength; ``a = b``
    collapses to ``sigma * e_a``. Worked example: s = 0.7, gamma = 0.8 -> 0.9 * (0.248 e_a + 0.752 e_b).
    """
    vec = np.zeros(num_classes, dtype=np.float32)
    weight = float(strength) ** float(gamma)
    vec[source] += sigma * (1.0 - weight)
    vec[target] += sigma * weight
    return vec


def target_class(row: dict[str, Any]) -> str:
    """The class the image was generated for: ``target_class``, else the dominant stored label."""
    if row.get("target_class"):
        return row["target_class"]
    return max(row["label"].items(), key=lambda kv: kv[1])[0]


def load_synthetic(folder: str | Path, class_names: Sequence[str], real_ids: Sequence[str],
                   kept: Sequence[int] | None = None, integration=None):
    """The rows ``kept`` (default: all) of a generated set as a ``training.SyntheticSet``, plus the rows.

    Args:
        folder: the set's folder (``manifest.jsonl`` + images).
        class_names: the dataset's classes in label order.
        real_ids: the real training part's image ids (``source_index`` for ``own_edits``, §4 (a)).
        kept: indices kept by the select stage.
        integration: the cell's ``contract.TrainingIntegration`` (labels rule, γ, σ); default as generated.
    """
    import torch
    from PIL import Image

    from augbench.synthetic.generate import read_manifest
    from augbench.training import SyntheticSet

    folder = Path(folder)
    rows = read_manifest(folder)
    rows = [rows[i] for i in kept] if kept is not None else rows
    index = {name: i for i, name in enumerate(class_names)}
    rule = integration.labels if integration is not None else "as_generated"
    gamma = integration.label_gamma if integration is not None else 0.8
    sigma = integration.label_sigma if integration is not None else 1.0
    images = []
    for row in rows:
        with Image.open(folder / row["file"]) as im:
            images.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
    targets = np.stack([label_vector(row, index, rule, gamma, sigma) for row in rows]) if rows else \
        np.zeros((0, len(index)), dtype=np.float32)
    classes = [index[target_class(row)] for row in rows]
    sources = [(row.get("sources") or [None])[0] for row in rows]
    stacked = torch.stack(images) if images and len({tuple(t.shape) for t in images}) == 1 else images
    return SyntheticSet(stacked, torch.from_numpy(targets), classes=classes,
                        source_index=SyntheticSet.source_index_from_ids(sources, list(real_ids))), rows


__all__ = ["SyntheticLabelError", "label_vector", "load_synthetic", "target_class"]
