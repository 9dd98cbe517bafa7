"""Oracle fidelity of a synthetic set (DESIGN.md "Metrics", beyond the papers).

The share of synthetic images a classifier assigns to their (dominant) label: a generator that draws
the wrong class, or nothing recognisable, scores low however diverse its images are. The embedded
profile's classifier is the world's oracle (``augbench.world.build``: an EfficientNet-Lite0 fine-tuned
on plentiful toybirds images); another classifier sees the images through its eval transform
(METHODS_SPEC §5.1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from augbench.metrics.common import cached_network, dominant_labels

__all__ = ["oracle_fidelity", "profile_oracle_fidelity"]


def profile_oracle_fidelity(images: Any, labels: Any, profile: Any, device: str | torch.device = "cpu") -> dict | None:
    """Oracle fidelity with the profile's oracle (the embedded world's), ``None`` when it has none.

    The world's oracle was trained on whole 64-px images, so it sees them whole (no resize-and-crop).
    """
    if not getattr(profile, "oracle", None):
        return None
    from augbench.world.check import load_oracle

    model, (mean, std) = cached_network(("oracle", profile.oracle, str(device)),
                                        lambda: load_oracle(Path(profile.oracle).parent))
    size = int(json.loads((Path(profile.oracle) / "config.json").read_text()).get("input_size", profile.image_size))
    return oracle_fidelity(model.to(device), images, labels, mean=mean, std=std, input_size=size, resize_ratio=1.0,
                           device=device)


def oracle_fidelity(
    classifier: Any,
    images: Any,
    labels: torch.Tensor | Sequence,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
    resize_ratio: float = 256 / 224,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Share of synthetic images a classifier assigns to their (dominant) label, in percent.

    Images go through the classifier's eval transform ``Resize((R, R)) -> CenterCrop(S)`` with
    ``R = round(S * resize_ratio)`` (METHODS_SPEC §5.1).

    Args:
        classifier: a ``ClassifierSpec`` (normalisation and input size taken from it) or an ``nn.Module``.
        images: uint8 ``[N, 3, H, W]`` or a list of images.
        labels: ``[N]`` or soft ``[N, C]`` labels.
        mean / std / input_size: required with a bare module.
        resize_ratio: ``R / S``.
        batch_size: inference batch size.
        device: default: the model's device.

    Returns:
        ``{"metric": "oracle_fidelity", "value": %, "per_class": {...}, "n": N}``.
    """
    from augbench.data.imaging import prepare_images
    from augbench.training.backbones import ClassifierSpec
    from augbench.training.evaluation import predict

    model = classifier
    if isinstance(classifier, ClassifierSpec):
        model = classifier.model
        mean = mean or classifier.mean
        std = std or classifier.std
        input_size = input_size or classifier.input_size
    if mean is None or std is None or input_size is None:
        raise ValueError("oracle_fidelity needs mean, std and input_size with a bare nn.Module")
    s = int(input_size)
    r = max(s, round(s * resize_ratio))
    x = prepare_images(images, r)
    top = (r - s) // 2
    x = x[..., top : top + s, top : top + s].contiguous()
    y = dominant_labels(labels)
    pred = predict(model, x, mean, std, batch_size=batch_size, device=device)
    hit = (pred == y).double()
    per_class = {str(int(c)): 100.0 * float(hit[y == c].mean()) for c in torch.unique(y).tolist()}
    return {
        "metric": "oracle_fidelity",
        "value": 100.0 * float(hit.mean()) if len(y) else float("nan"),
        "per_class": per_class,
        "n": int(len(y)),
    }
