"""An example third-party evaluation protocol (see ``tests/plugin_pkg/pyproject.toml``).

``first_shots``: the first k images of each class in split order, no randomness; evaluated on the
whole test split with the default few-shot table. It needs nothing of the harness beyond
``augbench.protocols.base``: registering it is one entry point in the ``augbench.protocols`` group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from augbench.data.core import ImageSource, Subset
from augbench.protocols.base import Protocol, ProtocolError
from augbench.protocols.splits import indices_by_class, split_samples

__all__ = ["FirstShots"]


@dataclass(frozen=True)
class FirstShots(Protocol):
    """The first ``k`` images of every class (a deterministic few-shot subset)."""

    name: ClassVar[str] = "first_shots"
    summary: ClassVar[str] = "the first k images of each class in split order"
    cell_parameters: ClassVar[Mapping[str, str]] = {"shots": "shots"}

    shots: tuple[int, ...] = (2,)

    def validate(self) -> None:
        if not self.shots or any(not isinstance(k, int) or k < 1 for k in self.shots):
            raise ProtocolError(f"shots = {self.shots!r}: expected positive whole numbers")

    def draw_training(self, source: ImageSource, seed: int, setting: Mapping[str, Any],
                      split: str | None = None) -> tuple[Subset, Subset | None]:
        split, samples = split_samples(source, split)
        k = int(setting["shots"])
        chosen = [i for idx in indices_by_class(samples).values() for i in idx[:k]]
        return Subset.of_source(source, split, self.name, {"shots": k}, tuple(samples[i] for i in chosen)), None
