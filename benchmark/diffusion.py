"""Shared diffusion machinery for offline methods (DESIGN.md, "Shared diffusion machinery").

* One warm ``StableDiffusionPipeline`` per (base model, revision, dtype, device, artifact) per process,
  kept in the context's ``PipelineCache``; a method gets a *view* of it with its own scheduler
  (components are shared, no weights are copied), so methods that need different samplers do not
  disturb each other.
* Loading always goes through ``StableDiffusionPipeline.from_pretrained(path_or_id, revision=...,
  local_files_only=...)`` with the safety checker off (METHODS_SPEC §1.1); the embedded world and SD
  v1.5 share this code.
* Prompt embeddings are cached per prompt text on the warm pipeline (``PromptEmbeddingCache``): each
  class prompt and the unconditional prompt ``""`` are encoded once per process, in one batched text
  encoder call, and passed as ``prompt_embeds`` / ``negative_prompt_embeds`` (PERF_NOTES §6 #3).
* Classifier-free guidance (METHODS_SPEC §1.2, ``eps_u + w (eps_c - eps_u)``) runs uncond and cond in
  one UNet call: diffusers concatenates ``negative_prompt_embeds`` and ``prompt_embeds`` (PERF_NOTES §6 #2).
* Initial latents come from one ``torch.Generator`` per request (``generator=[...]``), so a batch of N
  requests gives the same images as N single calls (PERF_NOTES §6 #1).

This module imports diffusers at import time; method modules import it lazily (inside ``generate``)
so that listing methods stays light.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)
from diffusers.pipelines import pipeline_utils as _pipeline_utils

if TYPE_CHECKING:
    from benchmark.contract import MethodContext
    from benchmark.profiles import Profile

__all__ = [
    "SCHEDULERS",
    "ModelLoadError",
    "PromptEmbeddingCache",
    "WarmPipeline",
    "load_warm_pipeline",
    "make_scheduler",
    "pipeline_view",
    "text_to_image",
    "to_uint8",
    "torch_dtype",
]

log = logging.getLogger(__name__)

# name -> (class, extra config). "dpmsolver++" is DPM-Solver++ multistep (METHODS_SPEC §3.1, §3.3).
SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
}


# diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); support both ranges we pin.
_DTYPE_KW = "dtype" if hasattr(_pipeline_utils, "_resolve_dtype") else "torch_dtype"


class ModelLoadError(OSError):
    """A foundation model could not be loaded; the message names the path and how to get it."""


def torch_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """The torch dtype for a profile's ``dtype`` name on ``device``.

    Half precision on CPU is ~20x slower than float32 (PERF_NOTES §5) and some CPU kernels lack it, so
    on CPU float32 is used whatever the profile says (logged).
    """
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; expected float32, float16 or bfloat16")
    if torch.device(device).type == "cpu" and dtype != torch.float32:
        log.info("profile dtype %s on CPU: using float32 (half precision is slower on CPU)", name)
        return torch.float32
    return dtype


class PromptEmbeddingCache:
    """Text-encoder outputs per prompt text, computed once (batched) and reused.

    Attributes:
        encoded_prompts: total number of prompts passed through the text encoder (for tests/reports).
    """

    def __init__(self, pipe: StableDiffusionPipeline):
        self._pipe = pipe
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        self.encoded_prompts = 0

    @torch.inference_mode()
    def get(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``[len(prompts), seq, dim]``; prompts not yet cached are encoded in one call."""
        with self._lock:
            missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
            if missing:
                embeds, _ = self._pipe.encode_prompt(
                    missing, self._pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=False
                )
                self.encoded_prompts += len(missing)
                for p, e in zip(missing, embeds, strict=True):
                    self._cache[p] = e
            return torch.stack([self._cache[p] for p in prompts])

    def __len__(self) -> int:
        return len(self._cache)


@dataclass
class WarmPipeline:
    """A loaded pipeline plus its per-process caches."""

    pipe: StableDiffusionPipeline
    key: tuple
    embeddings: PromptEmbeddingCache = field(init=False)

    def __post_init__(self) -> None:
        self.embeddings = PromptEmbeddingCache(self.pipe)


def _load_pipeline(profile: Profile, device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    path = profile.pipeline
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            path,
            revision=profile.pipeline_revision,
            local_files_only=profile.local_files_only,
            **{_DTYPE_KW: dtype},
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as exc:
        local = Path(path).exists()
        how = (
            "the folder exists but is incomplete; rebuild it (embedded profile: `augbench world build`)"
            if local
            else (
                "it is neither a local folder nor available offline; pass a local path or download it once "
                f"with `huggingface-cli download {path}` (profile {profile.name!r}, local_files_only="
                f"{profile.local_files_only})"
            )
        )
        raise ModelLoadError(f"cannot load the Stable Diffusion pipeline {path!r}: {how}. Cause: {exc}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_warm_pipeline(ctx: MethodContext, artifact: str | None = None) -> WarmPipeline:
    """The process's warm pipeline for ``ctx.profile`` (and an optional artifact id), loaded once.

    Args:
        ctx: method context (profile, device, pipeline cache).
        artifact: a concept artifact (``ti`` / ``lora_ti``, a ``benchmark.artifacts.Artifact`` or its name in
            ``ctx.artifacts``) applied to a separate copy of the base model (``None``: vanilla); see
            ``benchmark.concepts.adapted``.
    """
    profile = ctx.profile
    dtype = torch_dtype(profile.dtype, ctx.device)
    key = ("sd", profile.pipeline, profile.pipeline_revision, str(dtype), str(ctx.device), artifact)
    if artifact is not None:  # concept artifacts (benchmark.concepts): a pipeline of its own, never the vanilla one
        from benchmark.concepts.formats import apply_concepts

        art = ctx.artifacts[artifact] if isinstance(artifact, str) else artifact
        key = (*key[:-1], art.kind, art.key, str(art.folder))

        def adapted() -> WarmPipeline:
            warm = WarmPipeline(_load_pipeline(profile, ctx.device, dtype), key)  # fresh modules from disk
            warm.class_tokens = apply_concepts(warm.pipe, art, ctx.require_card().class_names)
            warm.artifact, warm.kind = art, art.kind
            return warm

        return ctx.pipelines.get(key, adapted)
    return ctx.pipelines.get(key, lambda: WarmPipeline(_load_pipeline(profile, ctx.device, dtype), key))


def make_scheduler(name: str, base_config: Any):
    """A diffusers scheduler ``name`` built from the pipeline's scheduler config (never hand-written)."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    cls, extra = SCHEDULERS[name]
    return cls.from_config(base_config, **extra)


def pipeline_view(warm: WarmPipeline, scheduler: str) -> StableDiffusionPipeline:
    """A pipeline sharing the warm pipeline's modules, with its own ``scheduler`` instance."""
    pipe = warm.pipe
    components = {**pipe.components, "scheduler": make_scheduler(scheduler, pipe.scheduler.config)}
    view = StableDiffusionPipeline(**components, requires_safety_checker=False)
    view.set_progress_bar_config(disable=True)
    return view


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8, rounding as diffusers' ``numpy_to_pil`` does."""
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


@torch.inference_mode()
def text_to_image(
    pipe: StableDiffusionPipeline,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
) -> np.ndarray:
    """Text-to-image for a batch of requests; returns uint8 ``[N, H, W, 3]``.

    One generator per image seeds its initial latent; CFG evaluates uncond and cond in one UNet call.
    """
    n = prompt_embeds.shape[0]
    if len(generators) != n or negative_prompt_embeds.shape[0] != n:
        raise ValueError(
            f"need one generator and one negative embedding per prompt: {n} prompts, {len(generators)} "
            f"generators, {negative_prompt_embeds.shape[0]} negative embeddings"
        )
    out = pipe(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
        generator=list(generators),
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        output_type="np",
        return_dict=False,
    )
    return to_uint8(np.asarray(out[0]))
