"""Concept learning as artifacts: ``ti`` (DA-Fusion) and ``lora_ti`` (Diff-Mix), real diffusers + peft.

Modules (DESIGN.md, "Shared diffusion machinery", "Stages, artifacts and training integration"):

* ``recipes``  -- ``concept_recipe(kind, profile)``: the recipe a method puts in ``ArtifactSpec(kind, recipe)``.
* ``training`` -- the two training loops (trained on the cell's training part only, explicit generators).
* ``formats``  -- the reference file formats and ``apply_concepts`` (tokens + LoRA into a fresh pipeline).
* ``memory``   -- the memory knobs (micro-batches, VAE encode batch, checkpointing, fp16 weights on CUDA)
  and ``ConceptMemoryError``, the one-line out-of-memory error naming the suite key that lowers the cost.
* ``kinds``    -- the builders ``augbench.run.artifacts`` registers as the kinds ``ti`` and ``lora_ti``.
* ``adapted``  -- ``load_adapted_pipeline(ctx, artifact)``, ``concept_prompt(warm, card, label)``.
* ``cli``      -- ``augbench concepts build | show | import``.

Importing this package is light; the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ConceptMemoryError", "class_tokens", "concept_prompt", "concept_recipe", "concept_spec",
           "load_adapted_pipeline", "prompting_pipeline", "validate_recipe"]

_EXPORTS = {"concept_recipe": "recipes", "concept_spec": "recipes", "validate_recipe": "recipes", "load_adapted_pipeline": "adapted",
            "concept_prompt": "adapted", "class_tokens": "adapted", "prompting_pipeline": "adapted",
            "ConceptMemoryError": "memory"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"augbench.diffusion.concepts.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'augbench.diffusion.concepts' has no attribute {name!r}")
