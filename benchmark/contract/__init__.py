"""The method contract: one interface for every augmentation method (DESIGN.md, "The method contract").

The method author's API, re-exported from two modules:

* :mod:`augbench.contract.config`: ``MethodConfig`` dataclasses and ``param`` metadata, presets'
  ``ConfigError``, the ``MethodCard`` and its ``TrainingIntegration`` (how synthetic images join
  training, METHODS_SPEC §4; ``REPLACEMENT_MODES``).
* :mod:`augbench.contract.methods`: the ``Method`` base class, ``BatchMethod`` (``make_params`` /
  ``apply`` with an explicit ``torch.Generator``) and ``OfflineMethod`` (``artifacts`` / ``setup`` /
  ``plan`` / ``generate`` / ``select``), with ``GenerationRequest``, ``SyntheticSample``,
  ``MethodContext``, ``ArtifactSpec``, ``request_seed`` and ``one_hot``.

Layering: nothing here imports ``augbench.run`` or ``augbench.training`` (``tests/test_layout.py``); the
warm-model cache comes from the diffusion side (``augbench.diffusion.cache``), seeds from
``augbench.canonical``.
"""

from __future__ import annotations

from augbench.contract.config import (
    DEFAULT_REPLACEMENT_MODE,
    LABEL_RULES,
    REPLACEMENT_MODES,
    ConfigError,
    EmptyConfig,
    MethodCard,
    MethodConfig,
    TrainingIntegration,
    param,
)
from augbench.contract.methods import (
    ARTIFACT_TRAINING_IMAGES,
    KINDS,
    ArtifactSpec,
    BatchMethod,
    GenerationRequest,
    Method,
    MethodContext,
    OfflineMethod,
    SyntheticSample,
    as_soft_targets,
    one_hot,
    request_seed,
)
from augbench.diffusion.cache import PROCESS_PIPELINES, PipelineCache

__all__ = [
    "ARTIFACT_TRAINING_IMAGES",
    "DEFAULT_REPLACEMENT_MODE",
    "KINDS",
    "LABEL_RULES",
    "PROCESS_PIPELINES",
    "REPLACEMENT_MODES",
    "ArtifactSpec",
    "BatchMethod",
    "ConfigError",
    "EmptyConfig",
    "GenerationRequest",
    "Method",
    "MethodCard",
    "MethodConfig",
    "MethodContext",
    "OfflineMethod",
    "PipelineCache",
    "SyntheticSample",
    "TrainingIntegration",
    "as_soft_targets",
    "one_hot",
    "param",
    "request_seed",
]
