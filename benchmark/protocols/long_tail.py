"""The long-tail protocol (METHODS_SPEC §6.2, §5.4): Diff-Mix's CUB-LT / Flower-LT construction and the
many / medium / few class groups.

:func:`long_tail` draws one subset, :func:`class_groups` splits classes by their training counts with
the §5.4 thresholds (:func:`shot_thresholds`: the dataset card's, CUB's by default); :class:`LongTail`
is the protocol object (suite parameters ``imbalance_factors`` and ``class_group_thresholds``, P2
Tab.2's table with IF 100, 20, 10 and a many / medium / few table).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from augbench.data.core import DataError, ImageSource, Subset
from augbench.protocols.base import EvaluationSet, Protocol, ProtocolError, TableLayout
from augbench.protocols.splits import (
    check_seed,
    class_name,
    half_split,
    indices_by_class,
    protocol_settings,
    split_samples,
    whole_split,
)

__all__ = ["ALLOWED_IMBALANCE_FACTORS", "CLASS_GROUP_NAMES", "LongTail", "class_groups", "long_tail",
           "long_tail_counts", "shot_thresholds"]

ALLOWED_IMBALANCE_FACTORS = (100, 50, 20, 10)
DEFAULT_MANY_ABOVE = 20  # CUB-LT: many-shot classes have > 20 training images (METHODS_SPEC §5.4)
DEFAULT_FEW_BELOW = 5  # CUB-LT: few-shot classes have < 5 training images
#: the class groups in print order (METHODS_SPEC §5.4)
CLASS_GROUP_NAMES = ("many", "medium", "few")


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


def _check_imbalance_factor(value: Any) -> None:
    if value not in ALLOWED_IMBALANCE_FACTORS:
        raise ValueError(
            f"imbalance factor must be one of {', '.join(map(str, ALLOWED_IMBALANCE_FACTORS))} (METHODS_SPEC §6.2); "
            f"got {value!r}"
        )


def _base_subset(source: ImageSource, seed: int, split: str | None) -> tuple[Subset, str]:
    """The set a long-tail subset starts from and how the params name it: the training split, or the
    training half of :func:`half_split` when the card says ``[protocols.long_tail] base = "half_split"``."""
    settings = protocol_settings(source, "long_tail")
    if settings.get("base", "split") == "half_split":
        base, _ = half_split(source, seed, split=settings.get("base_split", "all"))
        return base, f"half_split:{base.split}:seed={seed}"
    split, samples = split_samples(source, split)
    return Subset.of_source(source, split, "split", {}, tuple(samples)), f"split:{split}"


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
    "half_split"`` (Flowers) — the training half of ``half_split`` drawn with the same seed
    (HARNESS: dataset seed = trial seed, §6.2; Diff-Mix's own Flower-LT is unseeded, a BUG).

    Args:
        source: any image source.
        imbalance_factor: IF in {100, 50, 20, 10} (rho = 1/IF).
        seed: subset seed.
        split: split to start from (default: the card's training split; ignored when ``base`` is given).
        base: explicit starting subset (overrides the card's ``base``).

    Returns:
        A ``Subset`` with protocol ``long_tail`` and params ``{"imbalance_factor", "seed", "base"}``.

    Raises:
        ValueError: IF not in {100, 50, 20, 10}.
        DataError: a class has fewer images than its rank's ``n_k``.
    """
    check_seed(seed)
    _check_imbalance_factor(imbalance_factor)
    imbalance_factor = int(imbalance_factor)
    params: dict[str, Any] = {"imbalance_factor": imbalance_factor, "seed": seed}
    if base is None:
        base, params["base"] = _base_subset(source, seed, split)
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
                f"{source.card.id}: long-tail IF={imbalance_factor}: class {class_name(source, label)!r} (rank {rank}) "
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
    groups: dict[str, list[int]] = {name: [] for name in CLASS_GROUP_NAMES}
    for label, n in enumerate(train_counts):
        key = "many" if n > many_above else "few" if n < few_below else "medium"
        groups[key].append(label)
    return groups


class LongTailLayout(TableLayout):
    """P2 Tab.2 (METHODS_SPEC §9.3): imbalance factors 100, 20, 10 per dataset, and many / medium / few."""

    descending = True
    class_group_names = CLASS_GROUP_NAMES
    caption = ("Top-1 accuracy (%) on the balanced test split, long-tail subsets built as in METHODS_SPEC §6.2; "
               "many / medium / few = mean per-class accuracy of classes with > 20, 5-20, < 5 training images "
               "(per-dataset thresholds from the suite, §5.4)")


@dataclass(frozen=True)
class LongTail(Protocol):
    """Long-tail classification on the balanced test set (METHODS_SPEC §6.2; P2 Tab.2).

    Attributes:
        imbalance_factors: the IF of each cell, each in {100, 50, 20, 10}.
        class_group_thresholds: ``{dataset: (many_above, few_below)}`` overriding the dataset card's
            ``[protocols.long_tail] many_above / few_below`` (§5.4: CUB 20 / 5, Flowers 30 / 10); a
            dataset without either gets CUB's.
    """

    name: ClassVar[str] = "long_tail"
    summary: ClassVar[str] = "Diff-Mix's CUB-LT / Flower-LT construction, many / medium / few class groups"
    cell_parameters: ClassVar[Mapping[str, str]] = {"imbalance_factor": "imbalance_factors"}
    table_layout: ClassVar[TableLayout] = LongTailLayout()

    imbalance_factors: tuple[float, ...] = (100, 20, 10)
    class_group_thresholds: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.imbalance_factors, (list, tuple)) or not self.imbalance_factors:
            raise ProtocolError(f"imbalance_factors = {self.imbalance_factors!r}: expected a non-empty list, "
                                f"e.g. [100, 20, 10]")
        for value in self.imbalance_factors:
            self.check_setting({"imbalance_factor": value})
        if not isinstance(self.class_group_thresholds, Mapping):
            raise ProtocolError("class_group_thresholds: expected a table {<dataset> = [many_above, few_below]}")
        for dataset, pair in self.class_group_thresholds.items():
            ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
                  and all(isinstance(n, int) and not isinstance(n, bool) for n in pair))
            if not ok or pair[1] > pair[0] + 1:
                raise ProtocolError(f"class_group_thresholds.{dataset} = {pair!r}: expected [many_above, few_below], "
                                    "two whole numbers with few_below <= many_above + 1 (METHODS_SPEC §5.4: CUB "
                                    "[20, 5], Flowers [30, 10])")

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        try:
            _check_imbalance_factor(setting["imbalance_factor"])
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None

    def setting(self, values: Mapping[str, Any], source: ImageSource | None = None):
        """As :meth:`Protocol.setting`, a whole-number IF given as a float (``100.0``) written ``100``."""
        value = values.get("imbalance_factor")
        if isinstance(value, float) and value.is_integer():
            values = {**values, "imbalance_factor": int(value)}
        return super().setting(values, source)

    def draw_training(self, source: ImageSource, seed: int, setting: Mapping[str, Any],
                      split: str | None = None) -> tuple[Subset, Subset | None]:
        return long_tail(source, setting["imbalance_factor"], seed, split=split), None

    def draw_test(self, train_source: ImageSource, test_source: ImageSource, seed: int, setting: Mapping[str, Any],
                  split: str | None = None) -> EvaluationSet:
        """The balanced test set: the test split, or — when the long-tail base is Diff-Mix's half split
        (Flower-LT) — the other half of that split drawn with the same seed (METHODS_SPEC §6.2 "Test sets":
        the official Flowers test images overlap the half the subset is drawn from)."""
        settings = protocol_settings(test_source, "long_tail")
        if split is None and settings.get("base", "split") == "half_split":
            return EvaluationSet(half_split(test_source, seed, split=settings.get("base_split", "all"))[1],
                                 whole_split=False)
        return EvaluationSet(whole_split(test_source, split))

    def thresholds_of(self, source: ImageSource) -> dict[str, int]:
        """``{"many_above", "few_below"}``: the suite's ``class_group_thresholds`` for this dataset, else
        the dataset card's, else CUB's (METHODS_SPEC §5.4)."""
        many, few = self.class_group_thresholds.get(source.card.id) or shot_thresholds(source)
        return {"many_above": int(many), "few_below": int(few)}

    def class_groups(self, subset: Subset, source: ImageSource) -> dict[str, list[int]]:
        """Many / medium / few classes by their count in the long-tail training subset (§5.4)."""
        t = self.thresholds_of(source)
        return class_groups(subset.class_counts(source.num_classes), t["many_above"], t["few_below"])
