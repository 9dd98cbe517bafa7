"""The full-data protocol (METHODS_SPEC §5.5, P1 Tab.1): the whole training split with a random 20%
validation split.

:func:`full_data` draws the two parts; :class:`FullData` is the protocol object (suite parameter
``val_fraction``, one cell per dataset, P1 Tab.1's table).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from augbench.data.core import DataError, ImageSource, Subset
from augbench.protocols.base import Protocol, ProtocolError
from augbench.protocols.splits import check_seed, round_half_up, split_samples

__all__ = ["FullData", "full_data"]


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
    check_seed(seed)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    split, samples = split_samples(source, split)
    n_val = round_half_up(val_fraction * len(samples))
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


@dataclass(frozen=True)
class FullData(Protocol):
    """Full-data classification with P1's own validation split (METHODS_SPEC §5.5; P1 Tab.1).

    Attributes:
        val_fraction: the share of the training split held out for validation (P1: 20%); the suite's
            ``val_fraction``, which other protocols use for the validation split carved for selection.
    """

    name: ClassVar[str] = "full_data"
    summary: ClassVar[str] = "the whole training split with a random 20% validation split (P1)"

    val_fraction: float = 0.2

    def validate(self) -> None:
        value = self.val_fraction
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ProtocolError(f"val_fraction = {value!r}: expected a share strictly between 0 and 1, e.g. 0.2")

    def draw_training(self, source: ImageSource, seed: int, setting: Mapping[str, Any],
                      split: str | None = None) -> tuple[Subset, Subset | None]:
        return full_data(source, seed, val_fraction=self.val_fraction, split=split)
