"""The Waterbirds OOD protocol (METHODS_SPEC §6.3): k-shot CUB training, Waterbirds test split, four
(bird type, background) groups.

This module holds the one definition of the groups (``WATERBIRDS_GROUP_NAMES``: readers, the world's
toy datasets, training metrics and reports take keys, names and column labels from here), the subsets
(:func:`waterbirds`), the group metrics (:func:`waterbirds_metrics`, computed by the same
``metrics.group_metrics`` training records use) and the protocol object :class:`Waterbirds` (suite
parameter ``shots``, P2 Tab.3's table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from augbench.data.core import DataError, ImageSource, Sample, Subset
from augbench.protocols.base import SUMMARY, Column, EvaluationSet, TableLayout
from augbench.protocols.few_shot import FewShot, few_shot
from augbench.protocols.metrics import as_int_list, group_metrics
from augbench.protocols.splits import default_test_split, protocol_settings

__all__ = ["WATERBIRDS_COLUMNS", "WATERBIRDS_GROUP_NAMES", "WATERBIRDS_PROTOCOL", "WATERBIRDS_TABLE_COLUMNS",
           "Waterbirds", "WaterbirdsMetrics", "WaterbirdsSubsets", "waterbirds", "waterbirds_group",
           "waterbirds_metrics"]

WATERBIRDS_PROTOCOL = "waterbirds-species"
# The one definition of the Waterbirds groups (METHODS_SPEC §6.3): key ``f"{y}{place}"`` (DM
# waterbird.py), y = 1 for a waterbird, place = 1 for a water background.
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


def group_key(sample: Sample) -> str:
    """The group of a test image from its ``y`` and ``place`` attributes."""
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


@dataclass(frozen=True)
class WaterbirdsSubsets:
    """The two manifests of the Waterbirds OOD protocol and the test group sizes.

    Attributes:
        train: the k-shot training subset of the CUB-like source (identical to ``few_shot``'s).
        test: every image of the Waterbirds test split (protocol ``waterbirds-species``).
        group_counts: test images per group ``"00"`` (landbird, land) ... ``"11"`` (waterbird, water).
    """

    train: Subset
    test: Subset
    group_counts: dict[str, int] = field(default_factory=dict)


def waterbirds_test(test_source: ImageSource, train_dataset: str, shots: int, seed: int,
                    test_split: str | None = None) -> tuple[Subset, dict[str, int]]:
    """Every image of the Waterbirds test split (card ``[protocols.waterbirds] test_split``, else the
    test split) and the images per group; a group without images is a ``DataError``."""
    test_split = test_split or protocol_settings(test_source, "waterbirds").get("test_split") \
        or default_test_split(test_source)
    samples = test_source.samples(test_split)
    counts = dict.fromkeys(WATERBIRDS_GROUP_NAMES, 0)
    for s in samples:
        counts[group_key(s)] += 1
    empty = [WATERBIRDS_GROUP_NAMES[g] for g, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{test_source.card.id}: split {test_split!r} has no images in group(s): {', '.join(empty)}")
    params = {"train_dataset": train_dataset, "shots": shots, "seed": seed}
    return Subset(test_source.card.id, test_split, WATERBIRDS_PROTOCOL, params, tuple(samples)), counts


def _check_same_species(train_source: ImageSource, test_source: ImageSource) -> None:
    if list(train_source.class_names) != list(test_source.class_names):
        raise DataError(
            f"Waterbirds protocol: {train_source.card.id} and {test_source.card.id} must share the species list "
            f"(labels are species ids, METHODS_SPEC §6.3); they have {train_source.num_classes} and "
            f"{test_source.num_classes} classes with different names/order"
        )


def waterbirds(
    train_source: ImageSource,
    test_source: ImageSource,
    seed: int,
    shots: int = 5,
    train_split: str | None = None,
    test_split: str | None = None,
) -> WaterbirdsSubsets:
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
    _check_same_species(train_source, test_source)
    train = few_shot(train_source, shots, seed, split=train_split)
    test, counts = waterbirds_test(test_source, train_source.card.id, shots, seed, test_split)
    return WaterbirdsSubsets(train=train, test=test, group_counts=counts)


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
    """Four group accuracies, their unweighted mean, the worst group and the pooled accuracy (§6.3):
    ``metrics.group_metrics``, the numbers training records hold, with the worst group's key.

    Args:
        predictions: predicted species ids, aligned with ``samples`` (list, numpy array or tensor).
        samples: the test samples (e.g. ``WaterbirdsSubsets.test``) with ``y``/``place`` attributes.

    Raises:
        ValueError: lengths differ.
        DataError: a sample lacks its group attributes, or a group has no images.
    """
    samples = list(samples.samples if isinstance(samples, Subset) else samples)
    preds = as_int_list(predictions)
    if len(preds) != len(samples):
        raise ValueError(f"{len(preds)} predictions for {len(samples)} samples")
    keys = [group_key(s) for s in samples]
    empty = [k for k in WATERBIRDS_GROUP_NAMES if k not in keys]
    if empty:
        raise DataError(f"no test images in Waterbirds group(s) {', '.join(WATERBIRDS_GROUP_NAMES[k] for k in empty)}")
    m = group_metrics([p == s.label for p, s in zip(preds, samples, strict=True)], keys)
    acc = m["groups"]
    worst_group = min(acc, key=lambda k: acc[k])
    return WaterbirdsMetrics(group_accuracy=acc, group_count=m["group_sizes"], mean=m["group_mean"],
                             worst_group=worst_group, worst=acc[worst_group], pooled=m["pooled"])


class WaterbirdsLayout(TableLayout):
    """P2 Tab.3 (METHODS_SPEC §9.4): the four group columns, then worst group and pooled accuracy."""

    extra_columns = (((SUMMARY, "worst"), "Worst"), ((SUMMARY, "pooled"), "Pooled"))
    caption = ("Accuracy (%) per test group (bird type, background; L = land, W = water), "
               "Avg = unweighted mean of the four groups, Worst = worst group, Pooled = accuracy over all "
               "test images (METHODS_SPEC §6.3)")
    columns_are_cells = False

    def keeps(self, metrics: Mapping[str, Any] | None) -> bool:
        """Only records with group metrics (a few-shot record in the same run folder has none)."""
        return bool((metrics or {}).get("groups"))

    def columns(self, cells: Sequence[Mapping[str, Any]]) -> list[Column]:
        return [("groups", label) for _, label in WATERBIRDS_TABLE_COLUMNS]

    def label(self, column: Column) -> str:
        return column[1]

    def foreign_label(self, cell: Mapping[str, Any]) -> str:
        return cell["dataset"]

    def measurements(self, cell: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> list[tuple[str, str, float]]:
        metrics = metrics or {}
        rows = [("groups", label, float(metrics["groups"][g]))
                for g, label in WATERBIRDS_TABLE_COLUMNS if g in metrics["groups"]]
        return rows + [(SUMMARY, "worst", float(metrics["worst_group"])),
                       (SUMMARY, "pooled", float(metrics["pooled"]))]


@dataclass(frozen=True)
class Waterbirds(FewShot):
    """Waterbirds OOD (METHODS_SPEC §6.3; P2 Tab.3): the few-shot training subset of the CUB-like
    dataset, every image of the Waterbirds test split, accuracy per (bird type, background) group.

    Attributes:
        shots: the k of each cell (P2: 5).
    """

    name: ClassVar[str] = "waterbirds"
    summary: ClassVar[str] = "k-shot CUB training, Waterbirds test split, four (bird, background) groups"
    table_layout: ClassVar[TableLayout] = WaterbirdsLayout()

    def default_setting(self, source: ImageSource | None) -> dict[str, Any]:
        """The Waterbirds card's ``[protocols.waterbirds] shots``, else P2's 5."""
        table = protocol_settings(source, "waterbirds") if source is not None else {}
        return {"shots": int(table.get("shots", 5))}

    @classmethod
    def training_dataset(cls, test_source: ImageSource) -> str | None:
        """The card's ``[protocols.waterbirds] train_dataset`` (``cub``; the world's ``toybirds``)."""
        return protocol_settings(test_source, "waterbirds").get("train_dataset")

    def draw_test(self, train_source: ImageSource, test_source: ImageSource, seed: int, setting: Mapping[str, Any],
                  split: str | None = None) -> EvaluationSet:
        """Every image of the Waterbirds test split, its group sizes as facts."""
        _check_same_species(train_source, test_source)
        test, counts = waterbirds_test(test_source, train_source.card.id, int(setting["shots"]), seed, split)
        return EvaluationSet(test, facts={"test_groups": {WATERBIRDS_GROUP_NAMES[g]: n for g, n in counts.items()}})

    def test_groups(self, samples: Sequence[Sample]) -> list[str]:
        return [group_key(s) for s in samples]
