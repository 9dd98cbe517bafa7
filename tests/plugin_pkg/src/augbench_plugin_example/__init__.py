"""Example third-party augbench methods (see ``tests/plugin_pkg/pyproject.toml``).

* ``channel_flip`` (batch): with probability ``p`` per sample, reverse the colour channel order
  (RGB -> BGR); labels are unchanged.
* ``noise`` (offline): one image of seeded uniform noise per request, with the class's hard label;
  a stand-in for a generator that needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from augbench.contract import (
    BatchMethod,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    OfflineMethod,
    SyntheticSample,
    one_hot,
    param,
)

__all__ = ["ChannelFlip", "NoiseImages"]


@dataclass(frozen=True)
class ChannelFlipConfig(MethodConfig):
    p: float = param(0.5, "probability of flipping the channel order of a sample")
    num_classes: int | None = param(None, "number of classes, only needed for integer labels")


class ChannelFlip(BatchMethod):
    """Reverse the channel order of randomly chosen samples."""

    family: ClassVar[str] = "channel_flip"
    Config: ClassVar[type[MethodConfig]] = ChannelFlipConfig
    presets: ClassVar[dict] = {"always": {"p": 1.0}}
    card: ClassVar[MethodCard] = MethodCard(
        summary="ChannelFlip: RGB -> BGR for randomly chosen samples (example plugin)",
        changes="colour channel order",
        labels="unchanged",
        cost="negligible",
    )

    def make_params(self, batch_size, image_hw, generator):
        return torch.rand(batch_size, generator=generator) < self.config.p

    def apply(self, images, targets, params):
        out = torch.where(params.view(-1, 1, 1, 1), images.flip(1), images)
        return out, self.soft_targets(targets)


@dataclass(frozen=True)
class NoiseConfig(MethodConfig):
    size: int = param(8, "image side in pixels")
    per_image: int = param(1, "synthetic images per real image")


class NoiseImages(OfflineMethod):
    """Uniform-noise images with the hard label of a real image's class."""

    family: ClassVar[str] = "noise"
    Config: ClassVar[type[MethodConfig]] = NoiseConfig
    card: ClassVar[MethodCard] = MethodCard(
        summary="Noise: seeded uniform-noise images labelled with real classes (example plugin)",
        changes="adds noise images",
        labels="hard one-hot",
        cost="negligible",
    )

    def plan(self, subset, budget, seed, *, ctx=None):
        samples = list(subset.samples) * self.config.per_image
        n = len(samples) if budget is None else int(budget)
        return [
            GenerationRequest(
                index=i,
                seed=self.request_seed(seed, i),
                target_class=samples[i % len(samples)].label,
                source_ids=(samples[i % len(samples)].image_id,),
                source_classes=(samples[i % len(samples)].label,),
            )
            for i in range(n)
        ]

    def generate(self, requests, ctx):
        out = []
        for r in requests:
            rng = np.random.default_rng(r.seed)
            img = rng.integers(0, 256, size=(self.config.size, self.config.size, 3), dtype=np.uint8)
            out.append(SyntheticSample(img, one_hot(r.target_class, ctx.num_classes), self.sample_provenance(r)))
        return out
