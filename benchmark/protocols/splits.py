"""What every protocol shares: the card's protocol settings, the default splits, and the splits the
harness carves from any training subset (METHODS_SPEC §5.5, §6, §8.1).

Determinism: randomness comes only from ``random.Random(seed)`` (and, for Diff-Mix's Flowers split,
``numpy.random.default_rng(seed)``) applied to the samples in their split order, which the readers
take from the official files. Nothing depends on directory listings, dict/set hash order, the locale
or ``PYTHONHASHSEED``, so the same files give the same manifest byte for byte on every machine.

* :func:`validation_split` — a (stratified) validation split carved from any training subset, used by
  the harness for model selection (DESIGN.md, "Protocols and evaluation").
* :func:`half_split` — Diff-Mix's 50% per-class split of Flowers (§8.1), the base of Flower-LT.
* :func:`whole_split` — a split as a ``Subset`` (the test split most protocols evaluate on).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from augbench.data.core import DataError, ImageSource, Sample, Subset

__all__ = [
    "check_seed",
    "class_name",
    "default_test_split",
    "default_train_split",
    "half_split",
    "indices_by_class",
    "protocol_settings",
    "round_half_up",
    "split_samples",
    "validation_split",
    "whole_split",
]

#: ``Subset.protocol`` of a whole split (the test split of few-shot, long-tail and full-data cells).
WHOLE_SPLIT = "split"


def protocol_settings(source: ImageSource, protocol: str | None = None) -> dict[str, Any]:
    """The card's ``[protocols]`` table, or its ``[protocols.<protocol>]`` sub-table."""
    table = source.card.raw.get("protocols", {})
    if protocol is None:
        return {k: v for k, v in table.items() if not isinstance(v, dict)}
    sub = table.get(protocol, {})
    return dict(sub) if isinstance(sub, dict) else {}


def default_train_split(source: ImageSource) -> str:
    """The split protocols draw training images from: card ``[protocols] train_split``, else ``train``.

    (Aircraft and Pets use ``trainval``, the split P1 and the standard benchmarks train on, §8.1.)
    """
    split = protocol_settings(source).get("train_split")
    if split:
        return str(split)
    names = source.split_names()
    return "train" if "train" in names else names[0]


def default_test_split(source: ImageSource) -> str:
    """The split evaluated on: card ``[protocols] test_split``, else ``test``."""
    split = protocol_settings(source).get("test_split")
    if split:
        return str(split)
    names = source.split_names()
    return "test" if "test" in names else names[-1]


def check_seed(seed: int) -> int:
    """``seed`` itself; a bool or a non-int is a ``TypeError`` (a float seed would silently differ)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


def indices_by_class(samples: Sequence[Sample]) -> dict[int, list[int]]:
    """Positions of each label's samples, classes in order of first appearance (Diff-Mix's ``label_to_indices``)."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.label, []).append(i)
    return groups


def class_name(source_or_names: ImageSource | Sequence[str], label: int) -> str:
    """The class name of ``label`` for messages (``#label`` when out of range)."""
    names = source_or_names.class_names if isinstance(source_or_names, ImageSource) else source_or_names
    return names[label] if 0 <= label < len(names) else f"#{label}"


def split_samples(source: ImageSource, split: str | None) -> tuple[str, list[Sample]]:
    """``(split, its samples)``, the split defaulting to :func:`default_train_split`."""
    split = split or default_train_split(source)
    return split, source.samples(split)


def whole_split(source: ImageSource, split: str | None = None) -> Subset:
    """Every image of ``split`` (default: :func:`default_test_split`) in split order, protocol ``split``."""
    split = split or default_test_split(source)
    return Subset.of_source(source, split, WHOLE_SPLIT, {}, tuple(source.samples(split)))


def round_half_up(x: float) -> int:
    """``round`` with halves rounded up (Python's ``round`` rounds halves to even)."""
    return int(math.floor(x + 0.5))


def half_split(source: ImageSource, seed: int, split: str = "all") -> tuple[Subset, Subset]:
    """Diff-Mix's 50% per-class split of Flowers-102 (METHODS_SPEC §8.1; DM flower.py).

    ``rng = numpy.random.default_rng(seed)``; for every label 0..C-1 in order, a permutation of that
    class's images (in ``split`` order, i.e. file order for ``all``); the first ``floor(n/2)`` go to
    train, the rest to test. Both manifests list images class by class in permutation order.

    Returns:
        ``(train, test)`` subsets with protocol ``half_split`` and params ``{"seed", "part"}``.
    """
    import numpy as np

    check_seed(seed)
    samples = source.samples(split)
    groups = indices_by_class(samples)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for label in range(source.num_classes):
        idx = groups.get(label, [])
        perm = rng.permutation(len(idx)).tolist()
        cut = int(0.5 * len(idx))
        train.extend(idx[p] for p in perm[:cut])
        test.extend(idx[p] for p in perm[cut:])
    return (
        Subset.of_source(source, split, "half_split", {"seed": seed, "part": "train"}, tuple(samples[i] for i in train)),
        Subset.of_source(source, split, "half_split", {"seed": seed, "part": "test"}, tuple(samples[i] for i in test)),
    )


def validation_split(subset: Subset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Carve a validation split from a training subset, for model selection.

    Stratified when every class of ``subset`` has at least 2 images: class by class (ascending label),
    ``min(n_c - 1, max(1, round(fraction * n_c)))`` images go to validation, so every class keeps at
    least one training image and is represented in validation. Otherwise (some class has a single
    image, e.g. long-tail tails) ``round(fraction * N)`` images are drawn at random from all images
    except one kept image per class, so no class loses its last training image. All draws use
    ``random.Random(seed)``; both parts keep the subset's order.

    Args:
        subset: the training subset (any protocol).
        fraction: share of images for validation, in (0, 1).
        seed: seed of the split.

    Returns:
        ``(train, val)``; params are the parent's plus ``{"val_fraction", "val_seed", "part",
        "parent": <parent manifest hash>, "stratified"}``.
    """
    check_seed(seed)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    samples = list(subset.samples)
    groups = indices_by_class(samples)
    rng = random.Random(seed)
    stratified = bool(groups) and all(len(idx) >= 2 for idx in groups.values())
    val_idx: set[int] = set()
    if stratified:
        for label in sorted(groups):
            idx = groups[label]
            k = min(len(idx) - 1, max(1, round_half_up(fraction * len(idx))))
            val_idx.update(rng.sample(idx, k))
    else:
        keep = {label: rng.choice(idx) for label, idx in sorted(groups.items())}
        eligible = [i for i in range(len(samples)) if keep[samples[i].label] != i]
        n_val = min(len(eligible), round_half_up(fraction * len(samples)))
        val_idx.update(rng.sample(eligible, n_val))
    if not val_idx:
        raise DataError(f"{subset.dataset}: subset of {len(samples)} images is too small for a validation split")
    params = {
        **dict(subset.params),
        "val_fraction": fraction,
        "val_seed": seed,
        "stratified": stratified,
        "parent": subset.manifest_hash,
    }
    train = tuple(s for i, s in enumerate(samples) if i not in val_idx)
    val = tuple(s for i, s in enumerate(samples) if i in val_idx)
    return (
        Subset(subset.dataset, subset.split, subset.protocol, {**params, "part": "train"}, train, revision=subset.revision),
        Subset(subset.dataset, subset.split, subset.protocol, {**params, "part": "val"}, val, revision=subset.revision),
    )
