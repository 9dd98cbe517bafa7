"""Model selection rules (METHODS_SPEC §5.1 HARNESS, §6.3, §7.1): which epoch's numbers are reported.

Pure Python over the per-epoch history that training records, so reports can import the rule names
and their caption notes without importing torch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SELECTION_NOTES", "SELECTION_RULES", "per_group_maxima", "select_epoch", "selected_metrics"]

SELECTION_RULES = ("val_split", "last_epoch", "ema", "max_test", "max_per_group")
# rules that report the final weights (or their average): nothing before the last epoch can be chosen
FINAL_EPOCH_RULES = ("last_epoch", "ema")
SELECTION_NOTES = {
    "val_split": "epoch with the best accuracy on a validation split carved from the training data",
    "last_epoch": "last training epoch",
    "ema": "exponential moving average of the weights over training steps (and of BN statistics), at the last epoch",
    "max_test": "best epoch ON THE TEST SET (papers' protocol; optimistic: it peeks at the test set; for parity only)",
    "max_per_group": (
        "each group at its own best epoch ON THAT TEST GROUP (DII Waterbirds protocol; optimistic: selecting "
        "by per-group test accuracy peeks at the test set; for parity only)"
    ),
}
"""Caption text of each rule; the two test-set rules say that they are optimistic and why."""


def select_epoch(history: Sequence[Mapping[str, Any]], rule: str) -> int:
    """Position in ``history`` of the reported epoch under selection ``rule`` (§5.1 HARNESS).

    Only evaluated records (with ``test_top1`` or ``val_top1``) are considered. Ties go to the
    earliest epoch (strict improvement, as "best so far" checkpointing does).

    Args:
        history: per-epoch records with ``epoch``, ``val_top1``, ``test_top1``.
        rule: ``val_split``, ``last_epoch``, ``ema`` (the averaged weights' last evaluation), ``max_test`` or
            ``max_per_group`` (the latter selects like ``last_epoch``; per-group maxima are computed separately).

    Raises:
        ValueError: unknown rule, no evaluated epoch, or ``val_split`` without validation accuracy.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection {rule!r}; expected one of {', '.join(SELECTION_RULES)}")
    evaluated = [i for i, h in enumerate(history) if h.get("test_top1") is not None or h.get("val_top1") is not None]
    if not evaluated:
        raise ValueError("no evaluated epoch in the history")
    if rule in ("last_epoch", "ema", "max_per_group"):
        return evaluated[-1]
    key = "val_top1" if rule == "val_split" else "test_top1"
    cands = [i for i in evaluated if history[i].get(key) is not None]
    if not cands:
        raise ValueError(
            f"selection {rule!r} needs {key} in the history"
            + (" (pass a validation split: val=...)" if rule == "val_split" else " (pass a test split)")
        )
    best = cands[0]
    for i in cands[1:]:
        if history[i][key] > history[best][key]:
            best = i
    return best


def per_group_maxima(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each test group's best accuracy over the evaluated epochs, each group at its own epoch (§6.3).

    DII trains one model per Waterbirds group and reports that group's best-epoch test accuracy; with
    one model per trial the paper-compatible number is therefore the maximum over epochs taken group
    by group, so the groups of one result may come from different epochs.

    Args:
        history: per-epoch records; those with ``test`` metrics holding ``groups`` are used.

    Returns:
        ``{group key: max accuracy}``; empty when no epoch has group metrics.
    """
    tested = [h for h in history if h.get("test_top1") is not None and "groups" in h.get("test", {})]
    if not tested:
        return {}
    keys = tested[0]["test"]["groups"].keys()
    return {k: max(h["test"]["groups"][k] for h in tested) for k in keys}


def selected_metrics(history: Sequence[Mapping[str, Any]], rule: str) -> dict[str, Any]:
    """The reported metrics: the test metrics of the epoch ``rule`` selects, plus what the caption needs.

    Adds ``selection``, ``selection_note``, ``selected_epoch``, ``val_top1`` (at that epoch),
    ``last_epoch_top1``, ``max_test_top1`` / ``max_test_epoch`` (for comparison with the papers) and,
    with Waterbirds-style groups, ``max_per_group``. Under ``max_per_group`` the group numbers are
    replaced by the per-group maxima (their unweighted mean becomes ``top1``), and ``pooled`` is None:
    no single epoch produced them.
    """
    chosen = history[select_epoch(history, rule)]
    metrics: dict[str, Any] = copy.deepcopy(chosen.get("test", {}))
    metrics.update(
        selection=rule,
        selection_note=SELECTION_NOTES[rule],
        selected_epoch=chosen["epoch"],
        val_top1=chosen.get("val_top1"),
        last_epoch_top1=history[-1].get("test_top1"),
    )
    tested = [h for h in history if h.get("test_top1") is not None]
    if not tested or (len(tested) == 1 and rule in FINAL_EPOCH_RULES):
        return metrics  # one evaluation (TrainConfig.curves off): no maximum over epochs to compare with
    best = max(tested, key=lambda h: h["test_top1"])
    metrics["max_test_top1"], metrics["max_test_epoch"] = best["test_top1"], best["epoch"]
    maxima = per_group_maxima(tested)
    if maxima:
        metrics["max_per_group"] = maxima
        if rule == "max_per_group":
            metrics["groups"] = maxima
            metrics["group_mean"] = float(np.mean(list(maxima.values())))
            metrics["worst_group"] = float(min(maxima.values()))
            metrics["pooled"] = None
            metrics["top1"] = metrics["group_mean"]
    return metrics
