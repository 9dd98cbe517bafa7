"""The few-shot protocol (METHODS_SPEC §6.1): k images per class, Diff-Mix's per-class ``random.sample``.

:func:`few_shot` draws one subset; :class:`FewShot` is the protocol object (suite parameter ``shots``,
one cell per k, P2 Tab.1's table).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from augbench.data.core import DataError, ImageSource, Subset
from augbench.protocols.base import Protocol, ProtocolError
from augbench.protocols.splits import check_seed, class_name, indices_by_class, split_samples

__all__ = ["FewShot", "few_shot"]


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
        split: split to draw from (default: ``splits.default_train_split``).

    Returns:
        A ``Subset`` with protocol ``few_shot`` and params ``{"shots", "seed"}``.

    Raises:
        DataError: a class has fewer than ``shots`` images. Unlike Diff-Mix (which silently falls back
            to sampling with replacement, USER_NEEDS §2.6), nothing is duplicated; the message names the
            classes and their counts.
    """
    check_seed(seed)
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    split, samples = split_samples(source, split)
    groups = indices_by_class(samples)
    small = [(label, len(idx)) for label, idx in groups.items() if len(idx) < shots]
    if small:
        listed = ", ".join(f"{class_name(source, label)!r} (label {label}): {n}" for label, n in small[:10])
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


def check_shots(values: Any, what: str = "shots") -> None:
    """``values`` is a non-empty list of positive ints (k of each cell)."""
    items = values if isinstance(values, (list, tuple)) else None
    if not items or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in items):
        raise ProtocolError(f"{what} = {values!r}: expected a non-empty list of positive whole numbers, e.g. [5, 10]")


@dataclass(frozen=True)
class FewShot(Protocol):
    """k-shot classification on the official test split (METHODS_SPEC §6.1; P2 Tab.1).

    Attributes:
        shots: the k of each cell (P2: 5 and 10).
    """

    name: ClassVar[str] = "few_shot"
    summary: ClassVar[str] = "k images per class (Diff-Mix's per-class random.sample), official test split"
    cell_parameters: ClassVar[Mapping[str, str]] = {"shots": "shots"}

    shots: tuple[int, ...] = (5,)

    def validate(self) -> None:
        check_shots(self.shots)

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        check_shots([setting["shots"]], "shots")

    def draw_training(self, source: ImageSource, seed: int, setting: Mapping[str, Any],
                      split: str | None = None) -> tuple[Subset, Subset | None]:
        return few_shot(source, int(setting["shots"]), seed, split=split), None
