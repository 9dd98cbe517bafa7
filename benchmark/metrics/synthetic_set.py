"""All the metrics of one synthetic set, as the metrics stage records them (METHODS_SPEC §7; DESIGN.md "Metrics").

LPIPS diversity (§7.2, :mod:`augbench.metrics.perceptual`), CLIP score (§7.3,
:mod:`augbench.metrics.clip`) and oracle fidelity (:mod:`augbench.metrics.fidelity`), each with the
networks the profile names, loaded once per process and device.
"""

from __future__ import annotations

from typing import Any

import torch

from augbench.metrics.clip import clip_score
from augbench.metrics.fidelity import profile_oracle_fidelity
from augbench.metrics.perceptual import lpips_diversity

__all__ = ["synthetic_set_metrics"]


def synthetic_set_metrics(images: Any, labels: Any, card: Any, profile: Any,
                          device: str | torch.device = "cpu") -> dict[str, Any]:
    """``{"lpips", "clip_score", "oracle_fidelity"}`` of a synthetic set with ``profile``'s networks.

    Args:
        images: uint8 ``[N, 3, H, W]`` (or a list of images).
        labels: ``[N]`` or soft ``[N, C]`` labels (the dominant class groups the images and picks the text).
        card: the dataset card, whose ``prompt(label)`` is the CLIP text (§7.3).
        profile: a ``augbench.run.profiles.Profile``: its ``lpips`` network, ``clip`` and ``oracle``.
        device: where the networks run.

    Returns:
        The three JSON-ready results; ``oracle_fidelity`` is ``None`` when the profile has no oracle.
    """
    return {
        "lpips": lpips_diversity(images, labels, profile=profile, device=device),
        "clip_score": clip_score(images, labels, card, profile=profile, device=device),
        "oracle_fidelity": profile_oracle_fidelity(images, labels, profile, device),
    }
