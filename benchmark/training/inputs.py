"""What training consumes besides the model: real images, synthetic sets and batch mixers (METHODS_SPEC §4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from augbench.training.losses import one_hot

__all__ = ["BatchMixer", "LabeledImages", "SyntheticSet"]

BatchMixer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
"""A batch method (CutMix, MixUp): ``(images[B,C,H,W], targets[B,K], generator) -> (images, soft_targets)``."""


@dataclass
class LabeledImages:
    """Real images with integer labels (a training subset, validation split or test split).

    Attributes:
        images: uint8 ``[N, 3, H, W]`` tensor, or a sequence of PIL images / tensors (decoded once by
            ``prepare_images``).
        labels: ``[N]`` integer labels.
        groups: optional group key per image (e.g. Waterbirds ``"10"`` = waterbird on land, §6.3).
        image_ids: optional image ids (used to resolve synthetic sources for ``own_edits``).
    """

    images: Any
    labels: torch.Tensor | Sequence[int]
    groups: Sequence[str] | None = None
    image_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        n = len(self.images)
        if self.labels.shape != (n,):
            raise ValueError(f"LabeledImages: {n} images but labels of shape {tuple(self.labels.shape)}")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"LabeledImages: {n} images but {len(self.groups)} group keys")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class SyntheticSet:
    """A synthetic set for joint training: images, soft labels and (optionally) source images.

    Attributes:
        images: uint8 ``[M, 3, H, W]`` tensor or a sequence of images.
        targets: ``[M, C]`` probability vectors (hard labels are one-hot), or ``[M]`` integer labels.
        source_index: ``[M]`` index into the real training set of the image each synthetic image was
            edited from (``-1`` = none); needed by ``own_edits`` (§4 (a)).
        classes: ``[M]`` class used for class-conditional drawing (default: the dominant label, i.e.
            DM's target class for Diff-Mix labels, §4 (d')).
    """

    images: Any
    targets: torch.Tensor | Sequence
    source_index: torch.Tensor | Sequence[int] | None = None
    classes: torch.Tensor | Sequence[int] | None = None

    def __post_init__(self) -> None:
        self.targets = torch.as_tensor(self.targets)
        if self.targets.dim() == 1:
            self.targets = self.targets.long()
        else:
            self.targets = self.targets.float()
        m = len(self.images)
        if self.targets.shape[0] != m:
            raise ValueError(f"SyntheticSet: {m} images but {self.targets.shape[0]} targets")
        if self.source_index is not None:
            self.source_index = torch.as_tensor(self.source_index, dtype=torch.long)
        if self.classes is not None:
            self.classes = torch.as_tensor(self.classes, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        return one_hot(self.targets, num_classes) if self.targets.dim() == 1 else self.targets

    def class_of(self) -> torch.Tensor:
        if self.classes is not None:
            return self.classes
        return self.targets if self.targets.dim() == 1 else self.targets.argmax(1)

    @staticmethod
    def source_index_from_ids(sources: Sequence[str | None], real_ids: Sequence[str]) -> torch.Tensor:
        """``source_index`` from per-image source ids (provenance) and the real subset's ids."""
        pos = {i: k for k, i in enumerate(real_ids)}
        return torch.tensor([pos.get(s, -1) if s is not None else -1 for s in sources], dtype=torch.long)

