"""Original: the no-augmentation baseline (real data only, labels untouched).

The "Original" rows of P1 Table 1 and P2 Tables 1-4 (METHODS_SPEC §9) train on the real subset with
the recipe's standard transforms and nothing else. As a batch method it is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from augbench.contract import BatchMethod, MethodCard, MethodConfig, param

__all__ = ["Original"]


@dataclass(frozen=True)
class OriginalConfig(MethodConfig):
    num_classes: int | None = param(None, "number of classes, only needed for integer labels")


class Original(BatchMethod):
    """Identity batch method: returns the images unchanged and the targets as probability vectors."""

    family: ClassVar[str] = "original"
    deterministic: ClassVar[bool] = True
    Config: ClassVar[type[MethodConfig]] = OriginalConfig
    card: ClassVar[MethodCard] = MethodCard(
        summary="Original: no augmentation (real training data only)",
        changes="nothing",
        labels="the real hard labels (one-hot)",
        cost="none",
        references=("METHODS_SPEC §9 'Original' rows",),
    )

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> None:
        """No randomness: returns ``None``."""
        return None

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``images`` unchanged and ``targets`` as ``[B, C]`` probability vectors."""
        return images, self.soft_targets(targets)
