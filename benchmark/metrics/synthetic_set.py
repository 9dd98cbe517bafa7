"""All the metrics of one synthetic set, as the metrics stage records them (METHODS_SPEC §7; DESIGN.md "Metrics").

LPIPS diversity (§7.2, :mod:`augbench.metrics.perceptual`), CLIP score (§7.3,
:mod:`augbench.metrics.clip`) and oracle fidelity (:mod:`augbench.metrics.fidelity`), each with the
networks the profile names, loaded once per process and device.

With ``references`` (``{"train": (images, labels), "test": (images, labels)}``) the result also has
``"distribution"``: per reference, the distribution metrics of :mod:`augbench.metrics.distribution` (FD, KID,
precision / recall / density / coverage, Vendi, per class and pooled, on the profile's CLIP features; the
synthetic images encoded once); without it the result is what it always was.

The result is JSON without NaN: a metric that cannot be computed (LPIPS diversity when no class has two
synthetic images; any metric of an empty set) has ``value: null`` and a ``reason`` saying why, which
reports show as a blank cell; any other non-finite number is written as ``null`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from augbench.metrics.clip import clip_score
from augbench.metrics.common import finite_or_none
from augbench.metrics.fidelity import profile_oracle_fidelity
from augbench.metrics.perceptual import lpips_diversity

__all__ = ["NO_PAIRS_REASON", "NO_IMAGES_REASON", "synthetic_set_metrics", "with_reasons"]

NO_PAIRS_REASON = "no class has two synthetic images"
NO_IMAGES_REASON = "the synthetic set is empty"


def synthetic_set_metrics(images: Any, labels: Any, card: Any, profile: Any,
                          device: str | torch.device = "cpu",
                          references: Mapping[str, tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """``{"lpips", "clip_score", "oracle_fidelity"}`` (+ ``"distribution"``) of a synthetic set with ``profile``'s
    networks.

    Args:
        images: uint8 ``[N, 3, H, W]`` (or a list of images).
        labels: ``[N]`` or soft ``[N, C]`` labels (the dominant class groups the images and picks the text).
        card: the dataset card, whose ``prompt(label)`` is the CLIP text (§7.3).
        profile: a ``augbench.run.profiles.Profile``: its ``lpips`` network, ``clip`` and ``oracle``.
        device: where the networks run.
        references: real image sets to compare with, by name (``{"train": (images, labels), "test": (images,
            labels)}``: the cell's training part and its test images); ``None``: no distribution metrics.

    Returns:
        The three JSON-ready results (no NaN: :func:`with_reasons`); ``oracle_fidelity`` is ``None`` when the
        profile has no oracle. With ``references``, ``"distribution": {name: result}`` as
        :func:`augbench.metrics.distribution.distribution_metrics` returns it (a class with fewer than two
        images there or in the reference is ``null`` with a reason).
    """
    out = with_reasons({
        "lpips": lpips_diversity(images, labels, profile=profile, device=device),
        "clip_score": clip_score(images, labels, card, profile=profile, device=device),
        "oracle_fidelity": profile_oracle_fidelity(images, labels, profile, device),
    })
    if references is not None:
        from augbench.metrics.distribution import reference_distribution_metrics

        out["distribution"] = reference_distribution_metrics(images, labels, references, profile, device)
    return out


def with_reasons(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with NaN / infinity replaced by ``None``, and a ``reason`` beside every ``value`` that is
    ``None`` (LPIPS: :data:`NO_PAIRS_REASON`; an empty set: :data:`NO_IMAGES_REASON`)."""
    out = finite_or_none(metrics)
    for name, result in out.items():
        if not isinstance(result, dict) or result.get("value") is not None or "reason" in result:
            continue
        n = result.get("n", result.get("n_images"))
        if n == 0:
            result["reason"] = NO_IMAGES_REASON
        elif name == "lpips" and result.get("n_pairs") == 0:
            result["reason"] = NO_PAIRS_REASON
        else:
            result["reason"] = f"{name} is not a finite number for this set"
    return out
