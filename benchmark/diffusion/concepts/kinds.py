"""The built-in concept-learning artifact kinds ``ti`` and ``lora_ti`` (registered by ``augbench.run.artifacts``).

``augbench.run.artifacts`` wraps :data:`BUILTIN_KINDS` in ``ArtifactKind`` s the first time a kind is
looked up, so this module never imports it (no import cycle) and importing it stays light (diffusers
and peft are imported when a build runs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_KINDS", "KIND_VERSIONS"]

log = logging.getLogger(__name__)

# bump when a kind's output changes, so a fix is never masked by a stale artifact
KIND_VERSIONS = {"ti": 1, "lora_ti": 1}


def _builder(kind: str):
    def build(spec: Any, train_part: Any, ctx: Any, folder: Path) -> None:
        from augbench.diffusion.concepts.training import train_concepts

        steps = int(spec.recipe.get("steps", 0))
        every = max(1, steps // 10)

        def progress(step: int, loss: float) -> None:
            if step % every == 0 or step == steps:
                log.info("%s: step %d/%d loss %.4f", kind, step, steps, loss)

        train_concepts(kind, dict(spec.recipe), train_part, ctx, folder, progress)

    build.__name__ = f"build_{kind}"
    return build


# name -> (builder, version, summary)
BUILTIN_KINDS: dict[str, tuple[Any, int, str]] = {
    "ti": (_builder("ti"), KIND_VERSIONS["ti"],
           "DA-Fusion textual inversion: one token per class, only the embeddings trained (METHODS_SPEC §1.5)"),
    "lora_ti": (_builder("lora_ti"), KIND_VERSIONS["lora_ti"],
                "Diff-Mix concept learning: LoRA on every UNet attention projection + one token per class (§1.4)"),
}
