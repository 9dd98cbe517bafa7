"""Evaluation protocols: the training (and test) subsets each experiment uses (METHODS_SPEC §5.5, §6).

Every protocol turns an :class:`~augbench.data.core.ImageSource` into
:class:`~augbench.data.core.Subset` manifests of image ids. Only the ``ImageSource`` interface is
used (plus optional ``[protocols]`` settings from the dataset card), so the same code draws subsets of
the real datasets and of the embedded world's toy datasets.

Determinism: randomness comes only from ``random.Random(seed)`` (and, for Diff-Mix's Flowers split,
``numpy.random.default_rng(seed)``) applied to the samples in their split order, which the readers
take from the official files. Nothing depends on directory listings, dict/set hash order, the locale
or ``PYTHONHASHSEED``, so the same files give the same manifest byte for byte on every machine.

Protocols:

* :func:`few_shot` — §6.1, Diff-Mix's per-class ``random.sample`` (no silent replacement).
* :func:`long_tail` — §6.2, Diff-Mix's CUB-LT / Flower-LT construction; :func:`class_groups` gives
  many/medium/few classes with the §5.4 thresholds and :func:`mean_accuracy_by_class_group` their
  accuracies (the one definition, used by training too).
* :func:`waterbirds` and :func:`waterbirds_metrics` — §6.3, k-shot CUB training, Waterbirds test split,
  four (bird type, background) groups (``WATERBIRDS_GROUP_NAMES``, the one definition of the groups).
* :func:`full_data` — §5.5, a random 20% validation split of the training split.
* :func:`validation_split` — a (stratified) validation split carved from any training subset, used by
  the harness for model selection (DESIGN.md, "Protocols and evaluation").
* :func:`half_split` — Diff-Mix's 50% per-class split of Flowers (§8.1), the base of Flower-LT.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from augbench.data.core import DataError, ImageSource, Sample, Subset

ALLOWED_IMBALANCE_FACTORS = (100, 50, 20, 10)
DEFAULT_MANY_ABOVE = 20  # CUB-LT: many-shot classes have > 20 training images (METHODS_SPEC §5.4)
DEFAULT_FEW_BELOW = 5  # CUB-LT: few-shot classes have < 5 training images

WATERBIRDS_PROTOCOL = "waterbirds-species"
# The one definition of the Waterbirds groups (METHODS_SPEC §6.3): key ``f"{y}{place}"`` (DM
# waterbird.py), y = 1 for a waterbird, place = 1 for a water background. Readers, the world's toy
# datasets, training metrics and reports all take the keys, names and column labels from here.
WATERBIRDS_GROUP_NAMES = {
    "00": "landbird on land",
    "01": "landbird on water",
    "10": "waterbird on land",
    "11": "waterbird on water",
}
# P2 Tab.3 column labels, (bird type, background) (METHODS_SPEC §6.3, HARNESS reading of U16).
WATERBIRDS_COLUMNS = {"00": "L,L", "01": "L,W", "10": "W,L", "11": "W,W"}
# (key, column label) in P2 Tab.3's column order: L,L  W,W  L,W  W,L.
WATERBIRDS_TABLE_COLUMNS = tuple((key, WATERBIRDS_COLUMNS[key]) for key in ("00", "11", "01", "10"))


def waterbirds_group(y: int, place: int) -> str:
    """The group key of a bird of type ``y`` (1 = waterbird) on background ``place`` (1 = water)."""
    key = f"{int(y)}{int(place)}"
    if key not in WATERBIRDS_GROUP_NAMES:
        raise ValueError(f"Waterbirds y and place must be 0 or 1, got y={y}, place={place}")
    return key


# --- helpers ---------------------------------------------------------------------------------------


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


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


def indices_by_class(samples: Sequence[Sample]) -> dict[int, list[int]]:
    """Positions of each label's samples, classes in order of first appearance (Diff-Mix's ``label_to_indices``)."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.label, []).append(i)
    return groups


def _class_name(source_or_names: ImageSource | Sequence[str], label: int) -> str:
    names = source_or_names.class_names if isinstance(source_or_names, ImageSource) else source_or_names
    return names[label] if 0 <= label < len(names) else f"#{label}"


def _split_subset(source: ImageSource, split: str | None) -> tuple[str, list[Sample]]:
    split = split or default_train_split(source)
    return split, source.samples(split)


# --- few-shot (§6.1) -------------------------------------------------------------------------------


def few_shot(source: ImageSource, shots: int, seed: int, split: str | None = None) -> Subset:
    """k images per class, drawn with Diff-Mix's procedure (METHODS_SPEC §6.1).

    ``rng = random.Random(seed)``; for each class in order of first appearance in the training split,
    ``rng.sample(indices_of_class, shots)``. The manifest lists the images class by class in drawing
    order (Diff-Mix's ``dataset.select`` order). A class with no image in the split does not appear
    (its count is 0 in ``Subset.class_counts``; ``augbench data verify`` reports incomplete copies).

    Args:
        source: any image source.
        shots: images per class (k).
        seed: subset seed (HARNESS: the trial index, §6.1).
        split: split to draw from (default: :func:`default_train_split`).

    Returns:
        A ``Subset`` with protocol ``few_shot`` and params ``{"shots", "seed"}``.

    Raises:
        DataError: a class has fewer than ``shots`` images. Unlike Diff-Mix (which silently falls back
            to sampling with replacement, USER_NEEDS §2.6), nothing is duplicated; the message names the
            classes and their counts.
    """
    _check_seed(seed)
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    split, samples = _split_subset(source, split)
    groups = indices_by_class(samples)
    small = [(label, len(idx)) for label, idx in groups.items() if len(idx) < shots]
    if small:
        listed = ", ".join(f"{_class_name(source, label)!r} (label {label}): {n}" for label, n in small[:10])
        more = f" and {len(small) - 10} more" if len(small) > 10 else ""
        raise DataError(
            f"{source.card.id}: {shots}-shot subset impossible: {len(small)} class(es) of split {split!r} have fewer "
            f"than {shots} images: {listed}{more}. Sampling with replacement is not done silently; use "
            f"shots <= {min(n for _, n in small)} or a larger split."
        )
    rng = random.Random(seed)
    chosen: list[int] = []
    for idx in groups.values():
        chosen.extend(rng.sample(idx, shots))
    return Subset.of_source(source, split, "few_shot", {"shots": shots, "seed": seed}, tuple(samples[i] for i in chosen))


# --- long-tail (§6.2) ------------------------------------------------------------------------------


def long_tail_counts(num_images: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Images per rank, ``n_k = max(floor(nbar * rho**(k/(C-2))), 1)`` with ``nbar = N/C``, ``rho = 1/IF``.

    Computed with exactly Diff-Mix's floating-point expression (METHODS_SPEC §6.2), so the totals match
    (CUB: IF 100 -> 1,242 images, 83 single-image classes; IF 20 -> 1,798; IF 10 -> 2,238).
    """
    if num_classes < 3:
        raise DataError(f"long-tail construction needs at least 3 classes (exponent k/(C-2)); got {num_classes}")
    nbar = num_images / num_classes
    rho = 1.0 / imbalance_factor
    return [max(int(nbar * (rho ** (k / (num_classes - 2.0)))), 1) for k in range(num_classes)]


def long_tail(
    source: ImageSource,
    imbalance_factor: int,
    seed: int,
    split: str | None = None,
    base: Subset | None = None,
) -> Subset:
    """Diff-Mix's long-tail subset (CUB-LT, Flower-LT; METHODS_SPEC §6.2).

    Classes are sorted by their training count, descending, with a stable sort (ties keep the order of
    first appearance); rank ``k`` keeps ``n_k`` images (:func:`long_tail_counts`) drawn without
    replacement by ``random.Random(seed).sample`` in rank order. ``C`` is the card's class count.

    The starting set is the training split, or — when the card says ``[protocols.long_tail] base =
    "half_split"`` (Flowers) — the training half of :func:`half_split` drawn with the same seed
    (HARNESS: dataset seed = trial seed, §6.2; Diff-Mix's own Flower-LT is unseeded, a BUG).

    Args:
        source: any image source.
        imbalance_factor: IF in {100, 50, 20, 10} (rho = 1/IF).
        seed: subset seed.
        split: split to start from (default: :func:`default_train_split`; ignored when ``base`` is given).
        base: explicit starting subset (overrides the card's ``base``).

    Returns:
        A ``Subset`` with protocol ``long_tail`` and params ``{"imbalance_factor", "seed", "base"}``.

    Raises:
        ValueError: IF not in {100, 50, 20, 10}.
        DataError: a class has fewer images than its rank's ``n_k``.
    """
    _check_seed(seed)
    if imbalance_factor not in ALLOWED_IMBALANCE_FACTORS:
        raise ValueError(
            f"imbalance factor must be one of {', '.join(map(str, ALLOWED_IMBALANCE_FACTORS))} (METHODS_SPEC §6.2); "
            f"got {imbalance_factor!r}"
        )
    imbalance_factor = int(imbalance_factor)
    params: dict[str, Any] = {"imbalance_factor": imbalance_factor, "seed": seed}
    if base is None:
        settings = protocol_settings(source, "long_tail")
        if settings.get("base", "split") == "half_split":
            base, _ = half_split(source, seed, split=settings.get("base_split", "all"))
            params["base"] = f"half_split:{base.split}:seed={seed}"
        else:
            split, samples = _split_subset(source, split)
            base = Subset.of_source(source, split, "split", {}, tuple(samples))
            params["base"] = f"split:{split}"
    else:
        params["base"] = f"subset:{base.manifest_hash}"
    samples = list(base.samples)
    groups = indices_by_class(samples)
    ranked = sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True)  # stable
    counts = long_tail_counts(len(samples), source.num_classes, imbalance_factor)
    rng = random.Random(seed)
    chosen: list[int] = []
    for rank, (label, idx) in enumerate(ranked):
        n = counts[rank]
        if n > len(idx):
            raise DataError(
                f"{source.card.id}: long-tail IF={imbalance_factor}: class {_class_name(source, label)!r} (rank {rank}) "
                f"needs {n} images but has {len(idx)}"
            )
        chosen.extend(rng.sample(idx, n))
    return Subset.of_source(source, base.split, "long_tail", params, tuple(samples[i] for i in chosen))


def shot_thresholds(source: ImageSource | None = None) -> tuple[int, int]:
    """``(many_above, few_below)`` from the card's ``[protocols.long_tail]``, default CUB's (20, 5) (§5.4).

    Flowers' card sets (30, 10).
    """
    if source is None:
        return DEFAULT_MANY_ABOVE, DEFAULT_FEW_BELOW
    settings = protocol_settings(source, "long_tail")
    return int(settings.get("many_above", DEFAULT_MANY_ABOVE)), int(settings.get("few_below", DEFAULT_FEW_BELOW))


def class_groups(
    train_counts: Sequence[int],
    many_above: int = DEFAULT_MANY_ABOVE,
    few_below: int = DEFAULT_FEW_BELOW,
) -> dict[str, list[int]]:
    """Many / medium / few-shot classes by their number of training images (METHODS_SPEC §5.4).

    Args:
        train_counts: training images per class, indexed by label (e.g. ``Subset.class_counts(C)``).
        many_above: classes with more than this many images are "many" (CUB 20, Flowers 30).
        few_below: classes with fewer than this many are "few" (CUB 5, Flowers 10); the rest "medium".

    Returns:
        ``{"many": [...], "medium": [...], "few": [...]}``, labels in ascending order.
    """
    if few_below > many_above + 1:
        raise ValueError(f"few_below ({few_below}) must not exceed many_above + 1 ({many_above + 1})")
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for label, n in enumerate(train_counts):
        key = "many" if n > many_above else "few" if n < few_below else "medium"
        groups[key].append(label)
    return groups


def per_class_accuracy(predictions: Sequence[int] | Any, labels: Sequence[int] | Any) -> dict[int, float]:
    """Top-1 accuracy in percent of every class that has test images, keyed by label."""
    preds, labels = _as_int_list(predictions), _as_int_list(labels)
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    hits: dict[int, int] = {}
    count: dict[int, int] = {}
    for p, t in zip(preds, labels, strict=True):
        count[t] = count.get(t, 0) + 1
        hits[t] = hits.get(t, 0) + int(p == t)
    return {c: 100.0 * (hits[c] / count[c]) for c in sorted(count)}


def mean_accuracy_by_class_group(
    per_class: Mapping[int, float | None] | Sequence[float | None],
    groups: Mapping[str, Sequence[int]],
) -> dict[str, float | None]:
    """Many/medium/few accuracy from per-class accuracies: the unweighted mean over each group's classes.

    This is the one definition of the class-group accuracies (METHODS_SPEC §5.4): Diff-Mix's long-tail
    script averages the per-class accuracies of a group's classes (``sum(cls_acc[many]) / sum(many)``
    [DM train_hub_imb.py:801-814], the LDAM/decoupling convention), so every class counts once, whatever
    its number of test images. Classes without test images (``None`` or missing) are left out; a group
    with none of its classes tested is ``None``.

    Args:
        per_class: accuracy per label, as a list indexed by label or a ``{label: accuracy}`` mapping.
        groups: ``{"many": [...], "medium": [...], "few": [...]}`` (see :func:`class_groups`).
    """
    import numpy as np  # np.mean: the summation order the harness has always used for these numbers

    lookup = per_class if isinstance(per_class, Mapping) else dict(enumerate(per_class))
    out: dict[str, float | None] = {}
    for name, members in groups.items():
        values = [lookup[c] for c in members if lookup.get(c) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


def class_group_accuracy(
    predictions: Sequence[int] | Any,
    labels: Sequence[int] | Any,
    groups: Mapping[str, Sequence[int]],
) -> dict[str, float | None]:
    """Many/medium/few accuracy in percent of ``predictions``: :func:`mean_accuracy_by_class_group`
    of the per-class accuracies (METHODS_SPEC §5.4). ``None`` for a group with no test images.
    """
    return mean_accuracy_by_class_group(per_class_accuracy(predictions, labels), groups)


# --- Diff-Mix's Flowers split (§8.1) --------------------------------------------------------------


def half_split(source: ImageSource, seed: int, split: str = "all") -> tuple[Subset, Subset]:
    """Diff-Mix's 50% per-class split of Flowers-102 (METHODS_SPEC §8.1; DM flower.py).

    ``rng = numpy.random.default_rng(seed)``; for every label 0..C-1 in order, a permutation of that
    class's images (in ``split`` order, i.e. file order for ``all``); the first ``floor(n/2)`` go to
    train, the rest to test. Both manifests list images class by class in permutation order.

    Returns:
        ``(train, test)`` subsets with protocol ``half_split`` and params ``{"seed", "part"}``.
    """
    import numpy as np

    _check_seed(seed)
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


# --- full data with a validation split (§5.5) ----------------------------------------------------


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def full_data(
    source: ImageSource, seed: int, val_fraction: float = 0.2, split: str | None = None
) -> tuple[Subset, Subset]:
    """The whole training split with a random, non-stratified validation split (METHODS_SPEC §5.5).

    P1 holds out "20% of the training images (randomly selected)"; HARNESS: drawn with the trial seed,
    ``round(val_fraction * N)`` images (halves rounded up) by ``random.Random(seed).sample`` over
    positions. Both manifests keep the split's order.

    Returns:
        ``(train, val)`` subsets with protocol ``full_data`` and params ``{"seed", "val_fraction", "part"}``.
    """
    _check_seed(seed)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    split, samples = _split_subset(source, split)
    n_val = _round_half_up(val_fraction * len(samples))
    if not 0 < n_val < len(samples):
        raise DataError(f"{source.card.id}: split {split!r} has {len(samples)} images, too few for a {val_fraction:.0%} validation split")
    val_idx = set(random.Random(seed).sample(range(len(samples)), n_val))
    params = {"seed": seed, "val_fraction": val_fraction}
    train = tuple(s for i, s in enumerate(samples) if i not in val_idx)
    val = tuple(s for i, s in enumerate(samples) if i in val_idx)
    return (
        Subset.of_source(source, split, "full_data", {**params, "part": "train"}, train),
        Subset.of_source(source, split, "full_data", {**params, "part": "val"}, val),
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
    _check_seed(seed)
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
            k = min(len(idx) - 1, max(1, _round_half_up(fraction * len(idx))))
            val_idx.update(rng.sample(idx, k))
    else:
        keep = {label: rng.choice(idx) for label, idx in sorted(groups.items())}
        eligible = [i for i in range(len(samples)) if keep[samples[i].label] != i]
        n_val = min(len(eligible), _round_half_up(fraction * len(samples)))
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


# --- Waterbirds (§6.3) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterbirdsProtocol:
    """The two manifests of the Waterbirds OOD protocol and the test group sizes.

    Attributes:
        train: the k-shot training subset of the CUB-like source (identical to :func:`few_shot`'s).
        test: every image of the Waterbirds test split (protocol ``waterbirds-species``).
        group_counts: test images per group ``"00"`` (landbird, land) ... ``"11"`` (waterbird, water).
    """

    train: Subset
    test: Subset
    group_counts: dict[str, int] = field(default_factory=dict)


def waterbirds(
    train_source: ImageSource,
    test_source: ImageSource,
    seed: int,
    shots: int = 5,
    train_split: str | None = None,
    test_split: str | None = None,
) -> WaterbirdsProtocol:
    """Waterbirds OOD protocol (METHODS_SPEC §6.3): train on k-shot CUB, test on Waterbirds split 2.

    Labels are the species (200 CUB classes), not the binary waterbird/landbird label, so both sources
    must share the class list. Test samples must carry ``attrs["y"]`` and ``attrs["place"]``.

    Args:
        train_source: the CUB source (or the world's toybirds).
        test_source: the Waterbirds source (or the world's toywaterbirds).
        seed: subset seed of the k-shot training set.
        shots: k (P2 uses 5).
        train_split: split of ``train_source`` (default its training split).
        test_split: split of ``test_source`` (default: the card's ``[protocols.waterbirds] test_split`` or ``test``).

    Raises:
        DataError: the class lists differ, a test image lacks its group attributes, or a group is empty.
    """
    if list(train_source.class_names) != list(test_source.class_names):
        raise DataError(
            f"Waterbirds protocol: {train_source.card.id} and {test_source.card.id} must share the species list "
            f"(labels are species ids, METHODS_SPEC §6.3); they have {train_source.num_classes} and "
            f"{test_source.num_classes} classes with different names/order"
        )
    test_split = test_split or protocol_settings(test_source, "waterbirds").get("test_split") or default_test_split(test_source)
    train = few_shot(train_source, shots, seed, split=train_split)
    samples = test_source.samples(test_split)
    counts = dict.fromkeys(WATERBIRDS_GROUP_NAMES, 0)
    for s in samples:
        counts[_group_key(s)] += 1
    empty = [WATERBIRDS_GROUP_NAMES[g] for g, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{test_source.card.id}: split {test_split!r} has no images in group(s): {', '.join(empty)}")
    test = Subset(
        test_source.card.id,
        test_split,
        WATERBIRDS_PROTOCOL,
        {"train_dataset": train_source.card.id, "shots": shots, "seed": seed},
        tuple(samples),
    )
    return WaterbirdsProtocol(train=train, test=test, group_counts=counts)


def _group_key(sample: Sample) -> str:
    try:
        y, place = int(sample.attrs["y"]), int(sample.attrs["place"])
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"image {sample.image_id!r} has no Waterbirds group attributes 'y' and 'place' (attrs: {dict(sample.attrs)})"
        ) from None
    try:
        return waterbirds_group(y, place)
    except ValueError as err:
        raise DataError(f"image {sample.image_id!r}: {err}") from None


def _as_int_list(values: Any) -> list[int]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [int(v) for v in values]


@dataclass(frozen=True)
class WaterbirdsMetrics:
    """Species accuracy on the Waterbirds groups (METHODS_SPEC §6.3, §7.1), in percent.

    Attributes:
        group_accuracy: accuracy per group key ``"00"``, ``"01"``, ``"10"``, ``"11"`` (``y`` then ``place``).
        group_count: test images per group.
        mean: unweighted mean of the four group accuracies (P2's ``Avg``).
        worst_group: key of the group with the lowest accuracy (ties: first key).
        worst: that accuracy.
        pooled: accuracy over all test images.
    """

    group_accuracy: dict[str, float]
    group_count: dict[str, int]
    mean: float
    worst_group: str
    worst: float
    pooled: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with P2's column labels (``L,L`` ...) next to the group keys."""
        return {
            "group_accuracy": dict(self.group_accuracy),
            "group_count": dict(self.group_count),
            "columns": {WATERBIRDS_COLUMNS[k]: v for k, v in self.group_accuracy.items()},
            "mean": self.mean,
            "worst_group": self.worst_group,
            "worst_group_name": WATERBIRDS_GROUP_NAMES[self.worst_group],
            "worst": self.worst,
            "pooled": self.pooled,
        }


def waterbirds_metrics(predictions: Sequence[int] | Any, samples: Subset | Sequence[Sample]) -> WaterbirdsMetrics:
    """Four group accuracies, their unweighted mean, the worst group and the pooled accuracy (§6.3).

    Args:
        predictions: predicted species ids, aligned with ``samples`` (list, numpy array or tensor).
        samples: the test samples (e.g. ``WaterbirdsProtocol.test``) with ``y``/``place`` attributes.

    Raises:
        ValueError: lengths differ.
        DataError: a sample lacks its group attributes, or a group has no images.
    """
    samples = list(samples.samples if isinstance(samples, Subset) else samples)
    preds = _as_int_list(predictions)
    if len(preds) != len(samples):
        raise ValueError(f"{len(preds)} predictions for {len(samples)} samples")
    hits = dict.fromkeys(WATERBIRDS_GROUP_NAMES, 0)
    count = dict.fromkeys(WATERBIRDS_GROUP_NAMES, 0)
    for pred, s in zip(preds, samples, strict=True):
        key = _group_key(s)
        count[key] += 1
        hits[key] += int(pred == s.label)
    empty = [k for k, n in count.items() if n == 0]
    if empty:
        raise DataError(f"no test images in Waterbirds group(s) {', '.join(WATERBIRDS_GROUP_NAMES[k] for k in empty)}")
    acc = {k: 100.0 * hits[k] / count[k] for k in WATERBIRDS_GROUP_NAMES}
    worst_group = min(acc, key=lambda k: acc[k])
    return WaterbirdsMetrics(
        group_accuracy=acc,
        group_count=count,
        mean=sum(acc.values()) / len(acc),
        worst_group=worst_group,
        worst=acc[worst_group],
        pooled=100.0 * sum(hits.values()) / len(samples),
    )
