"""The accuracy metrics protocols evaluate with, defined once (METHODS_SPEC §5.4, §6.3, §7.1).

Training (``augbench.training.evaluation``) computes its records' numbers with these functions and the
protocols' own helpers (``waterbirds_metrics``, ``class_group_accuracy``) call them too, so a number in
a record and the same number computed from a manifest and predictions can never disagree. This module
imports only numpy (no torch, no reporting), so every side may use it.

Arithmetic: counts are exact integers, so ``100.0 * (hits / count)`` here equals the ``100 * (sum / n)``
of a float64 tensor mean the harness used before; means over classes or groups use ``np.mean``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["as_int_list", "class_group_accuracy", "group_metrics", "mean_accuracy_by_class_group",
           "per_class_accuracy"]


def as_int_list(values: Any) -> list[int]:
    """``values`` (list, numpy array or tensor) as a list of Python ints."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [int(v) for v in values]


def per_class_accuracy(predictions: Sequence[int] | Any, labels: Sequence[int] | Any) -> dict[int, float]:
    """Top-1 accuracy in percent of every class that has test images, keyed by label (ascending)."""
    preds, labels = as_int_list(predictions), as_int_list(labels)
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
        groups: ``{"many": [...], "medium": [...], "few": [...]}`` (``augbench.protocols.long_tail.class_groups``).
    """
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


def group_metrics(correct: Sequence[bool] | Any, groups: Sequence[str]) -> dict[str, Any]:
    """Accuracy over each group's samples, their unweighted mean, the worst group and the pooled accuracy.

    The record form of a grouped test set (Waterbirds, METHODS_SPEC §6.3, §7.1): ``groups`` (key ->
    accuracy %, keys sorted), ``group_sizes``, ``group_mean`` (P2 Tab.3 "Avg", not the pooled accuracy),
    ``worst_group`` (the lowest group accuracy) and ``pooled`` (accuracy over all samples).

    Args:
        correct: per sample, whether the prediction was right (bools, 0/1, or a tensor of them).
        groups: per sample, its group key (Waterbirds ``"{y}{place}"``).
    """
    hits_per_sample = [bool(v) for v in (correct.tolist() if hasattr(correct, "tolist") else correct)]
    if len(hits_per_sample) != len(groups):
        raise ValueError(f"{len(hits_per_sample)} results for {len(groups)} group keys")
    if not hits_per_sample:
        raise ValueError("no test samples to compute group accuracies on")
    hits: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for hit, key in zip(hits_per_sample, groups, strict=True):
        sizes[key] = sizes.get(key, 0) + 1
        hits[key] = hits.get(key, 0) + int(hit)
    keys = sorted(sizes)
    accs = {k: 100.0 * (hits[k] / sizes[k]) for k in keys}
    return {
        "groups": accs,
        "group_sizes": {k: sizes[k] for k in keys},
        "group_mean": float(np.mean(list(accs.values()))),
        "worst_group": float(min(accs.values())),
        "pooled": 100.0 * (sum(hits.values()) / len(hits_per_sample)),
    }
