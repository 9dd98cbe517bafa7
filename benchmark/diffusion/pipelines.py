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

Editing and inversion helpers (DESIGN.md: diffusers schedulers' ``set_timesteps`` / ``step`` /
``add_noise``, a hand-written loop only where methods need per-step control):

* ``denoise`` is the one per-step loop: CFG (and NoiseCutMix's second prompt) in one UNet call, a
  ``noise_hook`` that sees every branch's noise prediction (``NoiseStep``) and returns the one to use,
  and ``prompt_embeds`` that may be a callable of the step (Diff-II's two stages, §3.10.3).
* ``image_to_image`` is diffusers' img2img (§1.3) on ``denoise``: sources stretched to the model
  resolution (PIL bilinear, as DA-Fusion and Diff-Mix do), VAE posterior *sample* with the request's
  generator, noised to the first kept timestep, denoised, decoded, resized back to the source size.
* ``ddim_invert`` is Diff-II's inversion (§3.10.1): Lanczos stretch, VAE posterior *mean*, diffusers'
  ``DDIMInverseScheduler`` run through ``denoise``.
* ``decode_latents`` is the shared tail (VAE decode, uint8, optional resize back).

This module imports diffusers at import time; method modules import it lazily (inside ``generate``)
so that listing methods stays light.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DDIMInverseScheduler, StableDiffusionPipeline
from diffusers.pipelines import pipeline_utils as _pipeline_utils
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

# the samplers live in their own registry module; re-exported here, where methods have always found them
from augbench.diffusion.schedulers import SCHEDULERS, make_scheduler, scheduler_from_config

if TYPE_CHECKING:
    from augbench.contract import MethodContext
    from augbench.run.profiles import Profile

__all__ = [
    "SCHEDULERS",
    "ModelLoadError",
    "NoiseStep",
    "PromptEmbeddingCache",
    "WarmPipeline",
    "ddim_invert",
    "decode_latents",
    "denoise",
    "image_to_image",
    "load_error_message",
    "load_warm_pipeline",
    "make_scheduler",
    "pipeline_view",
    "ready_for_sampling",
    "strength_steps",
    "text_to_image",
    "to_uint8",
    "torch_dtype",
]

log = logging.getLogger(__name__)

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
        raise ModelLoadError(load_error_message(profile, exc)) from exc
    return ready_for_sampling(pipe, device)


def load_error_message(profile: Profile, exc: BaseException) -> str:
    """One line: which pipeline did not load, why, and the variable (or command) that puts a local copy in place
    (for ``ModelLoadError``; concept learning, which loads the components one by one, can raise the same line).

    The variable is ``AUGBENCH_<PROFILE>_PIPELINE``, or ``AUGBENCH_<PROFILE>_SD14`` for DA-Fusion's SD v1.4
    (``ArtifactSpec.context`` swaps it in as the pipeline); ``augbench world build`` is suggested only for the
    embedded profile's world.
    """
    from augbench.run.model_folders import pipeline_problem

    path = str(profile.pipeline)
    env_var = getattr(profile, "env_var", lambda key: f"AUGBENCH_{profile.name.upper()}_{key.upper()}")
    variable = env_var("sd14") if path == profile.extra.get("sd14_pipeline") else env_var("pipeline")
    cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]
    check = f"`augbench models check --profile {profile.name}` lists every model"
    if Path(path).exists():
        rebuild = " (the embedded world: `augbench world build`)" if profile.name == "embedded" else ""
        what = pipeline_problem(Path(path)) or f"{path} does not load as a StableDiffusionPipeline"
        return f"cannot load the Stable Diffusion pipeline: {what}; replace it{rebuild} or point {variable} at a " \
               f"complete copy (cause: {cause.rstrip('.')}). {check}"
    online = "downloads are off (local_files_only)" if profile.local_files_only else "it could not be downloaded"
    return (f"cannot load the Stable Diffusion pipeline {path!r} (profile {profile.name!r}): it is not a local folder "
            f"nor in the Hugging Face cache, and {online}. Point {variable} at a local diffusers copy, or download it "
            f"once with `huggingface-cli download {path}` (cause: {cause.rstrip('.')}). {check}")


def ready_for_sampling(pipe: StableDiffusionPipeline, device: str | torch.device) -> StableDiffusionPipeline:
    """Move a loaded pipeline to ``device`` the way the harness samples with it (in place; returned).

    Channels-last UNet and VAE (diffusers' own speed advice): measured 15-20 % less time per UNet call
    of 64 rows and per VAE decode of 32 latents of the embedded world on 2 CPU cores (``nox -s perf``).
    VAE slicing (diffusers' ``AutoencoderKL.enable_slicing``) decodes a batch one latent at a time: the
    decoder's activations at full resolution are what a batch of 32 sd15 images cannot hold (512 px: ~1 GB
    per image in fp32), and the UNet, not the decoder, is what batching speeds up.
    """
    pipe.to(device)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_warm_pipeline(ctx: MethodContext, artifact: str | None = None) -> WarmPipeline:
    """The process's warm pipeline for ``ctx.profile`` (and an optional artifact id), loaded once.

    Args:
        ctx: method context (profile, device, pipeline cache).
        artifact: a concept artifact (``ti`` / ``lora_ti``, a ``augbench.run.artifacts.Artifact`` or its name in
            ``ctx.artifacts``) applied to a separate copy of the base model (``None``: vanilla); see
            ``augbench.diffusion.concepts.adapted``.
    """
    profile = ctx.profile
    dtype = torch_dtype(profile.dtype, ctx.device)
    key = ("sd", profile.pipeline, profile.pipeline_revision, str(dtype), str(ctx.device), artifact)
    if artifact is not None:  # concept artifacts (augbench.diffusion.concepts): a pipeline of its own, never the vanilla one
        from augbench.diffusion.concepts.formats import apply_concepts

        art = ctx.artifacts[artifact] if isinstance(artifact, str) else artifact
        key = (*key[:-1], art.kind, art.key, str(art.folder))

        def adapted() -> WarmPipeline:
            warm = WarmPipeline(_load_pipeline(profile, ctx.device, dtype), key)  # fresh modules from disk
            warm.class_tokens = apply_concepts(warm.pipe, art, ctx.require_card().class_names)
            warm.artifact, warm.kind = art, art.kind
            return warm

        return ctx.pipelines.get(key, adapted)
    return ctx.pipelines.get(key, lambda: WarmPipeline(_load_pipeline(profile, ctx.device, dtype), key))


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


# --- per-step denoising, img2img, inversion (METHODS_SPEC §1.2, §1.3, §3.9, §3.10) ----------------

Embeds = torch.Tensor | Sequence[torch.Tensor]
"""One conditional branch ``[N, 77, D]``, or several evaluated in the same UNet call (NoiseCutMix)."""


@dataclass(frozen=True)
class NoiseStep:
    """What a ``noise_hook`` sees at one step of ``denoise``.

    Attributes:
        index: position of the step in the executed schedule (0 = first, noisiest step that runs).
        timestep: the scheduler's timestep ``t`` of this step.
        latents: ``x_t`` before the step, ``[N, C, h, w]``.
        eps_uncond: noise prediction of the negative prompt; ``None`` when ``guidance_scale <= 1``
            (no CFG branch is evaluated then, as in diffusers).
        eps_cond: the conditional prediction ``[N, C, h, w]``, or a tuple of them, one per branch,
            when ``prompt_embeds`` held several branches (NoiseCutMix's A and B).
        guidance_scale: ``w`` of METHODS_SPEC §1.2.
        rows: positions of these latents in the caller's batch (``image_to_image`` runs one group of
            equal step counts at a time; ``denoise`` itself passes ``0 .. N-1``).
    """

    index: int
    timestep: int
    latents: torch.Tensor
    eps_uncond: torch.Tensor | None
    eps_cond: torch.Tensor | tuple[torch.Tensor, ...]
    guidance_scale: float
    rows: tuple[int, ...]

    def guided(self, eps_cond: torch.Tensor | None = None) -> torch.Tensor:
        """``eps_u + w (eps_c - eps_u)`` (§1.2) for ``eps_cond`` (default: the single branch).

        NoiseCutMix (§3.9) mixes first and guides after, which equals guiding each branch and mixing:
        ``step.guided(mask * step.eps_cond[0] + (1 - mask) * step.eps_cond[1])``.
        """
        eps = self.eps_cond if eps_cond is None else eps_cond
        if isinstance(eps, tuple):
            raise ValueError("several conditional branches: pass the combined eps_cond to guided()")
        if self.eps_uncond is None:
            return eps
        return self.eps_uncond + self.guidance_scale * (eps - self.eps_uncond)


def strength_steps(num_inference_steps: int, strength: float) -> int:
    """Denoising steps img2img runs: ``k = min(floor(N * s), N)`` (METHODS_SPEC §1.3).

    Computed as diffusers' ``get_timesteps`` does (``int(N * s)``, the same floor for s > 0), so float
    products such as ``0.29 * 100 = 28.999...`` give diffusers' 28, not 29.

    Raises:
        ValueError: ``strength`` outside (0, 1] or ``num_inference_steps < 1``.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1] (METHODS_SPEC §1.3), got {strength}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    return min(math.floor(num_inference_steps * strength), num_inference_steps)


def _fresh_scheduler(pipe: StableDiffusionPipeline, template: Any, num_inference_steps: int | None,
                     timesteps: Sequence[int] | None) -> tuple[Any, torch.Tensor]:
    """A new scheduler from ``template``'s config (the template is never mutated) and its timesteps.

    With ``num_inference_steps`` the N-step schedule is set and ``timesteps``, if given, must be its
    tail (img2img truncation, §1.3; the begin index is set as diffusers' img2img does). Without it,
    ``timesteps`` is a custom schedule for schedulers whose ``set_timesteps`` accepts one.
    """
    sched = type(template).from_config(template.config)
    device = pipe.unet.device
    if num_inference_steps is None:
        if timesteps is None:
            raise ValueError("denoise needs num_inference_steps, timesteps or both")
        if "timesteps" not in inspect.signature(sched.set_timesteps).parameters:
            raise ValueError(f"{type(sched).__name__} takes no custom timesteps; pass num_inference_steps too")
        sched.set_timesteps(timesteps=[int(t) for t in timesteps], device=device)
        return sched, sched.timesteps
    sched.set_timesteps(num_inference_steps, device=device)
    full = sched.timesteps
    if timesteps is None:
        return sched, full
    wanted = [int(t) for t in timesteps]
    begin = len(full) - len(wanted)
    if not wanted or begin < 0 or full[begin:].tolist() != wanted:
        raise ValueError(
            f"timesteps {wanted} are not the tail of {type(sched).__name__}'s {num_inference_steps}-step "
            f"schedule {full.tolist()}"
        )
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin)
    return sched, full[begin:]


def _branches(embeds: Embeds, n: int, device: torch.device, dtype: torch.dtype) -> tuple[list[torch.Tensor], bool]:
    """Conditional branches as a list of ``[n, 77, D]`` tensors, and whether several were given."""
    several = not isinstance(embeds, torch.Tensor)
    branches = list(embeds) if several else [embeds]
    if not branches or any(b.shape[0] != n for b in branches):
        raise ValueError(f"prompt embeddings must have one row per latent ({n}); got {[b.shape for b in branches]}")
    return [b.to(device, dtype) for b in branches], several


@torch.inference_mode()
def denoise(
    pipe: StableDiffusionPipeline,
    latents: torch.Tensor,
    prompt_embeds: Embeds | Callable[[int, int], Embeds],
    negative_prompt_embeds: torch.Tensor | None,
    *,
    timesteps: Sequence[int] | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float,
    scheduler: Any = None,
    noise_hook: Callable[[NoiseStep], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The per-step sampling loop on a diffusers scheduler's ``step``; returns the final latents.

    One UNet call per step evaluates ``[uncond, branch_1, ...]`` (METHODS_SPEC §1.2, §3.9; PERF_NOTES
    §6 #2); the uncond branch is skipped when ``guidance_scale <= 1`` (as diffusers; Diff-II's inversion).

    Args:
        pipe: a pipeline view; its UNet is used, its scheduler only as the default template.
        latents: ``x`` at the first timestep that runs, ``[N, C, h, w]``, already scaled (pure noise:
            times the scheduler's ``init_noise_sigma``; img2img: ``add_noise`` output).
        prompt_embeds: ``[N, 77, D]``; a sequence of them (several conditional branches in one call,
            ``noise_hook`` required); or a callable ``(index, timestep) -> either`` called every step
            (Diff-II's two-stage denoising: suffixed embeddings while ``t >= 1000 (1 - s)``, §3.10.3).
        negative_prompt_embeds: ``[N, 77, D]`` of ``""``; may be ``None`` when ``guidance_scale <= 1``.
        timesteps: with ``num_inference_steps``, the tail of that schedule to run (img2img); alone, a
            custom schedule (schedulers whose ``set_timesteps`` accepts ``timesteps``).
        num_inference_steps: N of the scheduler's ``set_timesteps``.
        guidance_scale: CFG scale ``w``.
        scheduler: a diffusers scheduler used as a template: a fresh one is built from its config per
            call, so neither it nor ``pipe.scheduler`` changes state (default: ``pipe.scheduler``).
        noise_hook: gets a ``NoiseStep`` and returns the noise prediction passed to ``step``
            (default: ``NoiseStep.guided()``).
    """
    sched, ts = _fresh_scheduler(pipe, scheduler if scheduler is not None else pipe.scheduler,
                                 num_inference_steps, timesteps)
    cfg = guidance_scale > 1
    if cfg and negative_prompt_embeds is None:
        raise ValueError(f"guidance_scale {guidance_scale} > 1 needs negative_prompt_embeds")
    unet = pipe.unet
    n, x = latents.shape[0], latents.to(unet.device, unet.dtype)
    negative = [negative_prompt_embeds.to(unet.device, unet.dtype)] if cfg else []
    # the timesteps as Python ints, read once: int(t) of a CUDA tensor each step would sync host and device
    host_ts = [int(t) for t in ts.tolist()] if isinstance(ts, torch.Tensor) else [int(t) for t in ts]
    for i, t in enumerate(ts):
        embeds = prompt_embeds(i, host_ts[i]) if callable(prompt_embeds) else prompt_embeds
        branches, several = _branches(embeds, n, unet.device, unet.dtype)
        if several and noise_hook is None:
            raise ValueError("several conditional branches need a noise_hook that combines them")
        k = len(branches) + len(negative)
        model_in = sched.scale_model_input(torch.cat([x] * k), t)
        eps = unet(model_in, t, encoder_hidden_states=torch.cat(negative + branches), return_dict=False)[0].chunk(k)
        cond = eps[len(negative):]
        step = NoiseStep(i, host_ts[i], x, eps[0] if cfg else None, tuple(cond) if several else cond[0],
                         float(guidance_scale), tuple(range(n)))
        x = sched.step(noise_hook(step) if noise_hook else step.guided(), t, x, return_dict=False)[0]
    return x


def _model_input(pipe: StableDiffusionPipeline, images: Sequence[np.ndarray], size: int, resample: int) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` images stretched to ``size x size`` with PIL, as ``[N, 3, s, s]`` in [-1, 1]."""
    arrays = [
        np.asarray(Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB").resize((size, size), resample),
                   dtype=np.float32)
        for img in images
    ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    return (2.0 * x - 1.0).to(pipe.vae.device, pipe.vae.dtype)


def _encode(pipe: StableDiffusionPipeline, pixels: torch.Tensor, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    """VAE latents x scaling factor: the posterior sample with each row's generator, or the mean (None).

    The sample equals diffusers' per-image ``latent_dist.sample(generator[i])`` (img2img's
    ``retrieve_latents``), drawn before the row's forward-process noise, as there.
    """
    dist = pipe.vae.encode(pixels).latent_dist
    if generators is None:
        z = dist.mean
    else:
        z = dist.mean + dist.std * randn_tensor(dist.mean.shape, generator=list(generators),
                                                device=dist.mean.device, dtype=dist.mean.dtype)
    return z * pipe.vae.config.scaling_factor


@torch.inference_mode()
def decode_latents(
    pipe: StableDiffusionPipeline, latents: torch.Tensor, sizes: Sequence[tuple[int, int]] | None = None
) -> list[np.ndarray]:
    """VAE-decode latents (÷ scaling factor) to uint8 ``[H, W, 3]`` images, as diffusers' "np" output.

    Args:
        sizes: per image ``(height, width)`` to resize to (PIL bilinear, as DA-Fusion and Diff-Mix
            resize their edits back, METHODS_SPEC §3.5-3.7); ``None`` keeps the model resolution.
    """
    vae = pipe.vae
    x = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    images = to_uint8((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy())
    if sizes is None:
        return list(images)
    if len(sizes) != len(images):
        raise ValueError(f"{len(sizes)} sizes for {len(images)} images")
    return [
        img if img.shape[:2] == tuple(hw) else np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))
        for img, hw in zip(images, sizes, strict=True)
    ]


def _select_rows(embeds: Any, rows: list[int]) -> Any:
    """``embeds`` (tensor, branches or per-step callable) restricted to ``rows``."""
    if callable(embeds):
        return lambda i, t: _select_rows(embeds(i, t), rows)
    if isinstance(embeds, torch.Tensor):
        return embeds[rows]
    return [e[rows] for e in embeds]


@torch.inference_mode()
def image_to_image(
    pipe: StableDiffusionPipeline,
    images: Sequence[np.ndarray],
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor,
    strengths: Sequence[float],
    generators: Sequence[torch.Generator],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    size: int,
    noise_hook: Callable[[NoiseStep], torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """diffusers img2img semantics (METHODS_SPEC §1.3) for a batch; uint8 images at each source's size.

    Per request: the source is stretched to ``size x size`` (PIL bilinear; DA-Fusion and Diff-Mix
    resize the whole image to 512, §3.5-3.7, so no crop), VAE-encoded (posterior *sample* drawn with
    the request's generator, as diffusers' img2img), noised with ``add_noise`` (second draw of the same
    generator) to the first of the last ``strength_steps(N, s)`` timesteps, denoised by ``denoise``,
    decoded and resized back (bilinear). Requests with equal step counts share one batch, so
    per-image strengths (DA-Fusion) may differ; the hook's ``NoiseStep.rows`` index into this batch.
    Built on ``denoise`` rather than ``StableDiffusionImg2ImgPipeline`` for the hook and the grouping;
    a test checks it matches that pipeline.

    Args:
        images: uint8 ``[H, W, 3]`` sources; prompt_embeds / negative_prompt_embeds ``[N, 77, D]``.
        strengths, generators: one per image. size: the model resolution.
    """
    n = len(images)
    rows_of = [len(strengths), len(generators), negative_prompt_embeds.shape[0]]
    rows_of += [prompt_embeds.shape[0]] if isinstance(prompt_embeds, torch.Tensor) else []
    if any(r != n for r in rows_of):
        raise ValueError(
            f"need one strength, generator, negative and prompt embedding per image: {n} images, {len(strengths)} "
            f"strengths, {len(generators)} generators, embeddings {rows_of[2:]}"
        )
    steps = [strength_steps(num_inference_steps, s) for s in strengths]
    if 0 in steps:
        raise ValueError(f"strength {strengths[steps.index(0)]} runs no step with {num_inference_steps} steps; use >= 1/N")
    latents = _encode(pipe, _model_input(pipe, images, size, Image.BILINEAR), generators)
    out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    for k in dict.fromkeys(steps):
        rows = [i for i in range(n) if steps[i] == k]
        sched, ts = _fresh_scheduler(pipe, pipe.scheduler, num_inference_steps, None)
        begin = (num_inference_steps - k) * sched.order
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        x0 = latents[rows]
        noise = randn_tensor(x0.shape, generator=[generators[i] for i in rows], device=x0.device, dtype=x0.dtype)
        xt = sched.add_noise(x0, noise, ts[begin : begin + 1].repeat(len(rows)))
        hook = None if noise_hook is None else (lambda s, r=tuple(rows): noise_hook(dataclasses.replace(s, rows=r)))
        final = denoise(pipe, xt, _select_rows(prompt_embeds, rows), negative_prompt_embeds[rows],
                        timesteps=ts[begin:].tolist(), num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale, noise_hook=hook)
        for i, img in zip(rows, decode_latents(pipe, final, [images[i].shape[:2] for i in rows]), strict=True):
            out[i] = img
    return out


@torch.inference_mode()
def ddim_invert(
    pipe: StableDiffusionPipeline,
    images: Sequence[np.ndarray],
    prompt_embeds: torch.Tensor,
    *,
    num_inference_steps: int,
    size: int,
    guidance_scale: float = 1.0,
    negative_prompt_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """DDIM inversion of images to ``x_T`` latents ``[N, C, h, w]`` (METHODS_SPEC §3.10.1, Diff-II).

    As DII ``get_inversion.py``: stretch to ``size x size`` with Lanczos, VAE posterior *mean* x
    scaling factor, then diffusers' ``DDIMInverseScheduler`` (from ``pipe.scheduler``'s config) run by
    ``denoise`` with ``guidance_scale`` 1 (no CFG; 200 steps in DII). Deterministic: no generator.
    The timestep spacing is the config's when ``DDIMInverseScheduler`` supports it ("leading",
    "trailing"), else "leading" (SD v1.5's, which DII inverts with; the embedded world's config says
    "linspace"). To reconstruct with ``denoise``, use a DDIM scheduler of the same spacing.
    """
    inverse = scheduler_from_config(DDIMInverseScheduler, pipe.scheduler.config)
    if inverse.config.timestep_spacing not in ("leading", "trailing"):
        inverse = DDIMInverseScheduler.from_config(inverse.config, timestep_spacing="leading")
    latents = _encode(pipe, _model_input(pipe, images, size, Image.LANCZOS), None)
    return denoise(pipe, latents * inverse.init_noise_sigma, prompt_embeds, negative_prompt_embeds,
                   num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, scheduler=inverse)
