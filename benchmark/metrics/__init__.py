"""Metrics of synthetic sets (METHODS_SPEC §7; DESIGN.md "Metrics"), one module per metric.

* :mod:`~augbench.metrics.perceptual`: LPIPS-form perceptual distances (the ``lpips`` package's
  AlexNet, the embedded profile's uncalibrated EfficientNet-Lite0 one), LPIPS diversity, distance to
  a source image;
* :mod:`~augbench.metrics.clip`: CLIP score with tensor-side CLIP preprocessing;
* :mod:`~augbench.metrics.fidelity`: oracle fidelity;
* :mod:`~augbench.metrics.synthetic_set`: all of them for one set, as the metrics stage records them;
* :mod:`~augbench.metrics.common`: label and image conversion, one network per process.
"""

from __future__ import annotations

from augbench.metrics.clip import CLIPScorer, clip_score, profile_clip_scorer
from augbench.metrics.fidelity import oracle_fidelity, profile_oracle_fidelity
from augbench.metrics.perceptual import PerceptualDistance, effnet_perceptual, lpips_alex, lpips_diversity
from augbench.metrics.synthetic_set import synthetic_set_metrics

__all__ = [
    "CLIPScorer",
    "PerceptualDistance",
    "clip_score",
    "effnet_perceptual",
    "lpips_alex",
    "lpips_diversity",
    "oracle_fidelity",
    "profile_clip_scorer",
    "profile_oracle_fidelity",
    "synthetic_set_metrics",
]
