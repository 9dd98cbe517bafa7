"""NoiseCutMix: CutMix of two classes' noise predictions inside the sampler (METHODS_SPEC §3.9, §5.5; P1).

Every synthetic image mixes a class A and a class B, both drawn uniformly over all classes and
independently (B may equal A) [NCM augmentation.py:45]. A CutMix box is drawn at pixel resolution,
as NCM ``utils.py:40-80`` does:

* ``lam ~ Beta(alpha, alpha)`` (alpha 1.0); ``cut_w = floor(W * sqrt(1 - lam))`` (``cut_h`` likewise);
  centre ``(cx, cy)`` uniform integers in ``[0, W) x [0, H)``; the box spans
  ``[cx - cut_w // 2, cx + cut_w // 2)`` (same in y), clipped to the image (:func:`cutmix_box`);
* the mask is 1 inside the box (class A, NCM's "target") and 0 outside (class B). It is down-sampled
  to the latent grid as NCM does through diffusers' ``VaeImageProcessor`` (PIL Lanczos of an 8-bit
  grayscale image, values in [0, 1], soft edges one to two latent pixels wide; ``latent_mask =
  "lanczos"``), or snapped to the latent grid as a binary box (``"nearest"``) (:func:`latent_mask`).

At every denoising step one UNet call evaluates ``[uncond, prompt_A, prompt_B]`` and the sampler gets
``eps_u + w (M eps_A + (1 - M) eps_B - eps_u)`` (§3.9 "Noise mixing"; mixing before CFG equals mixing
the guided predictions because the unconditional branch is shared). DPM-Solver++, 25 steps, w = 7.5,
the profile's resolution (512 for sd15), initial latents ``randn x init_noise_sigma`` from each
request's own generator (diffusers' ``prepare_latents``), so batch 1 and batch N agree.

Label (soft): ``y = r e_A + (1 - r) e_B`` with ``r`` the *realised* (clipped) box area at pixel
resolution (code semantics, §3.9 DISAGREE; ``label_area = "latent"``: the mean of the down-sampled
mask). ``label_weight = "sampled"`` uses the drawn λ instead (P1 Eq.2): P1 gives λ to the class
*outside* its box, which here is B, so A (the box) gets ``1 - λ`` — the unclipped box area; with a
symmetric Beta and uniform classes this is P1's label in distribution.

Prompts (§1.7, §3.9 DISAGREE): by default the ``lora_ti`` artifact's learned tokens (Diff-Mix LoRA +
``<class_i>``, trained on the cell's training part) with ``a photo of a {token} {meta}``; NCM's code
writes ``a phot of a <class_i> [meta]`` (typo "phot", preset ``code_prompt``); P1 writes
``a photo of {class name}`` (preset ``paper``: P1's prompt on the fine-tuned model and the sampled-λ
label). ``vanilla``: plain names ``a photo of a {name} {meta}`` on the profile's vanilla model (NCM's
vanilla path is broken, §3.9 BUG, so this is a harness variant).

P1 used Diff-Mix's full-data checkpoints, trained on the whole training split including the images
P1 later holds out for validation (§5.5). ``concept_training_images = "full_split"`` (preset
``p1_full_split``) reproduces that: the ``lora_ti`` artifact is trained on the cell's training part
*plus* its validation part, which the leakage guard refuses unless the suite sets
``allow_foreign_artifacts = true``; the record and the table caption then flag the method.

Training integration: P1 concatenates real and synthetic sets (§4 HARNESS for P1, §5.5) and trains
on the stored soft labels: ``replacement_mode = "concat"``, ``labels = "as_generated"``.

Stored mixing metadata: ``target_class = A``, ``source_classes = (B,)``, ``lam`` = the label weight of
A, so a row's ``mix`` is ``{a: B, b: A, s: weight of A}``; the ``diff_mix`` label rule with γ = 1,
σ = 1 reproduces the stored label (other γ, σ apply Diff-Mix's transform to NoiseCutMix's weight).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from augbench.contract import (
    ArtifactSpec,
    ConfigError,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    MethodContext,
    OfflineMethod,
    SyntheticSample,
    TrainingIntegration,
    param,
)
from augbench.diffusion.sampling import sampler_settings
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["NoiseCutMix", "NoiseCutMixConfig", "cutmix_box", "latent_mask", "mixed_noise_denoise", "pixel_mask"]

LATENT_MASKS = ("lanczos", "nearest")
LABEL_AREAS = ("pixel", "latent")
LABEL_WEIGHTS = ("area", "sampled")
CONCEPT_IMAGES = ("train_part", "full_split")


@dataclass(frozen=True)
class NoiseCutMixConfig(MethodConfig):
    alpha: float = param(1.0, "λ ~ Beta(alpha, alpha) sets the box size", paper="1.0 [NCM noise_cutmix.py:21; §3.9]")
    expansion: float = param(1.0, "synthetic set size as a multiple of the real subset size",
                             paper="1.0 (100 %) [P1 §4.3 L115]; NCM code --num_aug 10")
    prompt_template: str = param(
        "a photo of a {token} {meta}", "prompt of both classes; {token} learned token, {name} class name, {meta} meta word",
        paper="NCM code: 'a phot of a <class_i> [meta]' (preset code_prompt); P1: 'a photo of {name}' "
              "(preset paper) [§1.7, §3.9 DISAGREE]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    concepts: str = param("lora_ti", "concept artifact whose tokens the prompts use ('none': the vanilla model; "
                          "a string, since None means 'default' in configs)",
                          paper="DM full-data LoRA rank 10 + tokens [§1.4, P1 footnote 2]", choices=("lora_ti", "none"))
    concept_steps: int | None = param(None, "training steps of the concept artifact (None: the profile's recipe)")
    concept_training_images: str = param(
        "train_part", "images the concept artifact learns from: the cell's training part, or training + validation "
        "parts (P1's full-split checkpoints; needs allow_foreign_artifacts = true)",
        paper="P1: DM full-data checkpoints, trained on the whole training split [§5.5]", choices=CONCEPT_IMAGES)
    latent_mask: str = param("lanczos", "pixel mask to latent grid: PIL Lanczos (soft edges) or nearest (binary, "
                             "box snapped to the grid)", paper="NCM: Lanczos via VaeImageProcessor [§3.9]",
                             choices=LATENT_MASKS)
    label_weight: str = param("area", "label weight of class A: the realised box area (code) or the sampled λ (P1)",
                              paper="NCM code: clipped area; P1 Eq.2: sampled λ [§3.9 DISAGREE]", choices=LABEL_WEIGHTS)
    label_area: str = param("pixel", "where the area is measured: the pixel mask or the down-sampled latent mask",
                            paper="NCM: pixel (512 px) [§3.9]", choices=LABEL_AREAS)
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25 for sd15)",
                                            paper="25 DPM-Solver++ [P1 §4.3 L113]")
    guidance_scale: float | None = param(None, "CFG scale w (None: the profile's, 7.5)", paper="7.5 [§1.2]")
    image_size: int | None = param(None, "generation resolution; the box is drawn at it (None: the profile's)",
                                   paper="512")
    scheduler: str = param("dpmsolver++", "diffusers scheduler built from the pipeline's config",
                           paper="DPM-Solver++ [§3.9]", choices=("dpmsolver++", "ddim", "pndm"))

    @property
    def uses_concepts(self) -> bool:
        return self.concepts != "none"

    def validate(self) -> None:
        super().validate()
        if not float(self.alpha) > 0:
            raise ConfigError(f"NoiseCutMix alpha = {self.alpha}: λ ~ Beta(alpha, alpha) needs alpha > 0 "
                              "(METHODS_SPEC §3.9 uses 1.0)")
        if self.expansion < 0:
            raise ConfigError(f"NoiseCutMix expansion must be >= 0, got {self.expansion}")
        try:
            self.prompt_template.format(name="x", meta="y", token="<t>")
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"prompt_template {self.prompt_template!r} may only use {{name}}, {{meta}} and "
                              "(with concepts) {token}") from exc
        if "{token}" in self.prompt_template and not self.uses_concepts:
            raise ConfigError("prompt_template uses {token}, which needs concepts = 'lora_ti' (or use {name})")
        if self.concept_training_images == "full_split" and not self.uses_concepts:
            raise ConfigError("concept_training_images = 'full_split' needs concepts = 'lora_ti' (it says what the "
                              "concept artifact is trained on)")


# --- box and masks (METHODS_SPEC §3.9 "Mask construction") ------------------------------------------


def cutmix_box(lam: float, cx: int, cy: int, width: int, height: int) -> tuple[int, int, int, int]:
    """NCM's (and CutMix's) clipped box ``(x0, y0, x1, y1)`` for λ and centre ``(cx, cy)``, end exclusive.

    ``cut_w = floor(W sqrt(1 - λ))``; the box spans ``[cx - cut_w // 2, cx + cut_w // 2)`` clipped to
    ``[0, W]`` (same in y), as NCM ``utils.py:61-71`` (§2.1, §3.9).
    """
    cut_w, cut_h = int(width * math.sqrt(1.0 - lam)), int(height * math.sqrt(1.0 - lam))
    x0, x1 = (min(max(v, 0), width) for v in (cx - cut_w // 2, cx + cut_w // 2))
    y0, y1 = (min(max(v, 0), height) for v in (cy - cut_h // 2, cy + cut_h // 2))
    return x0, y0, x1, y1


def pixel_mask(box: Sequence[int], width: int, height: int) -> np.ndarray:
    """``float32 [H, W]``: 1 inside the box (class A), 0 outside (class B)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), dtype=np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def latent_mask(box: Sequence[int], width: int, height: int, factor: int, mode: str = "lanczos") -> torch.Tensor:
    """The box's mask on the latent grid, ``float32 [1, H / factor, W / factor]`` in [0, 1].

    ``lanczos`` (NCM, §3.9 step 4): the 8-bit pixel mask resized by diffusers' ``VaeImageProcessor``
    (grayscale, no normalisation, no binarisation; PIL Lanczos), so box edges become soft ramps with
    small clipped ringing. ``nearest``: binary, each box edge snapped to the nearest latent grid line.
    """
    h, w = height // factor, width // factor
    if mode == "nearest":
        x0, y0, x1, y1 = (int(math.floor(v / factor + 0.5)) for v in box)
        return torch.from_numpy(pixel_mask((x0, y0, x1, y1), w, h))[None]
    if mode != "lanczos":
        raise ConfigError(f"unknown latent_mask {mode!r}; expected one of {', '.join(LATENT_MASKS)}")
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    # vae_scale_factor=1: the target is already the latent size (no rounding of it to a multiple)
    processor = VaeImageProcessor(vae_scale_factor=1, do_normalize=False, do_binarize=False,
                                  do_convert_grayscale=True)
    image = Image.fromarray((pixel_mask(box, width, height) * 255).astype(np.uint8), mode="L")
    return processor.preprocess(image, height=h, width=w)[0].to(torch.float32)


def vae_scale_factor(profile: Any) -> int:
    """Pixels per latent cell of the profile's VAE: ``2 ** (len(block_out_channels) - 1)`` (as diffusers)."""
    from diffusers import AutoencoderKL

    config = AutoencoderKL.load_config(profile.pipeline, subfolder="vae", revision=profile.pipeline_revision,
                                       local_files_only=profile.local_files_only)
    return 2 ** (len(config["block_out_channels"]) - 1)


# --- sampling (METHODS_SPEC §3.9 "Noise mixing at each step") ---------------------------------------


def mixed_noise_denoise(pipe, latents: torch.Tensor, embeds_a: torch.Tensor, embeds_b: torch.Tensor,
                        negative: torch.Tensor, masks: torch.Tensor, *, num_inference_steps: int,
                        guidance_scale: float) -> torch.Tensor:
    """The NoiseCutMix sampling loop: ``[uncond, A, B]`` in one UNet call per step, box-mixed noise.

    Args:
        pipe: a pipeline view (its scheduler is the template of ``augbench.diffusion.pipelines.denoise``).
        latents: initial ``x_T`` ``[N, C, h, w]`` (already times ``init_noise_sigma``).
        embeds_a, embeds_b, negative: prompt embeddings ``[N, 77, D]`` of A, B and ``""``.
        masks: ``[N, 1, h, w]``, 1 where class A's noise is used.

    Returns:
        The final latents ``[N, C, h, w]``.
    """
    from augbench.diffusion.pipelines import denoise

    masks = masks.to(pipe.unet.device, pipe.unet.dtype)

    def mix(step):
        eps_a, eps_b = step.eps_cond
        m = masks[list(step.rows)]
        return step.guided(m * eps_a + (1 - m) * eps_b)

    return denoise(pipe, latents, [embeds_a, embeds_b], negative, num_inference_steps=num_inference_steps,
                   guidance_scale=guidance_scale, noise_hook=mix)


# --- the method -------------------------------------------------------------------------------------


class NoiseCutMix(OfflineMethod):
    """NoiseCutMix (METHODS_SPEC §3.9; recipe §5.5): two prompts' noise mixed by a CutMix box, soft labels."""

    family: ClassVar[str] = "noisecutmix"
    Config: ClassVar[type[MethodConfig]] = NoiseCutMixConfig
    presets: ClassVar[dict] = {
        # NCM code's prompt, typo included [NCM noise_cutmix.py:75-76]
        "code_prompt": {"prompt_template": "a phot of a {token} {meta}"},
        # P1's wording [P1 §4.3 L113] on the fine-tuned model, label from the sampled λ [P1 §3.2 Eq.2]
        "paper": {"prompt_template": "a photo of {name}", "label_weight": "sampled"},
        # the vanilla model with class names (harness variant; NCM's vanilla path is broken, §3.9 BUG)
        "vanilla": {"concepts": "none", "prompt_template": "a photo of a {name} {meta}"},
        # P1's generator: concepts learned on the whole training split, validation images included (§5.5)
        "p1_full_split": {"concept_training_images": "full_split"},
    }
    card: ClassVar[MethodCard] = MethodCard(
        summary="NoiseCutMix: two classes' noise predictions mixed by a CutMix box at every step; soft area labels",
        changes="adds text-to-image images whose box region shows class A and the rest class B (A, B uniform)",
        labels="soft: r e_A + (1 - r) e_B, r = realised box area (METHODS_SPEC §3.9)",
        cost=("per image: num_inference_steps UNet passes at batch 3 (uncond, A, B in one call; 1.5x SD-random's "
              "batch 2), one VAE decode; lora_ti concept learning once per subset, shared with Diff-Gen/-Mix/-II"),
        references=("METHODS_SPEC §3.9", "METHODS_SPEC §5.5", "METHODS_SPEC §1.4", "P1 §3, §4.3 L113-115"),
        training=TrainingIntegration(replacement_mode="concat", replacement_p=0.5, labels="as_generated"),
    )

    # -- artifacts and planning ------------------------------------------------------------------

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        """The ``lora_ti`` artifact (none for ``vanilla``); ``full_split`` trains it on training + validation."""
        cfg = self.config
        if not cfg.uses_concepts:
            return []
        from augbench.diffusion.concepts import concept_spec

        return [concept_spec(cfg.concepts, ctx.profile, cfg.concept_steps, trained_on=cfg.concept_training_images)]

    def plan(
        self, subset: Subset, budget: int | None, seed: int, *, ctx: MethodContext | None = None
    ) -> list[GenerationRequest]:
        """``budget`` (default ``round(expansion * |subset|)``) requests, each with its classes, λ and box.

        Every draw comes from a NumPy generator seeded from the request's seed, in the order A, B, λ,
        cx, cy, so the plan depends on neither batching nor workers.
        """
        cfg = self.config
        has_card = ctx is not None and ctx.card is not None
        num_classes = ctx.num_classes if has_card else max(subset.labels, default=-1) + 1
        size = cfg.image_size or (ctx.profile.image_size if ctx is not None else None)
        if not size:
            raise ConfigError("NoiseCutMix draws its box at the generation resolution: pass ctx (the profile's "
                              "image_size) or set image_size")
        factor = None
        if cfg.label_area == "latent":
            if ctx is None:
                raise ConfigError("label_area = 'latent' needs ctx (the profile's VAE sets the latent grid)")
            factor = vae_scale_factor(ctx.profile)
        total = int(budget) if budget is not None else int(math.floor(cfg.expansion * len(subset.labels) + 0.5))
        requests = []
        for index in range(total):
            request_seed = self.request_seed(seed, index)
            rng = np.random.default_rng(derive_seed(request_seed, "noisecutmix-plan"))
            class_a, class_b = int(rng.integers(num_classes)), int(rng.integers(num_classes))
            lam = float(rng.beta(cfg.alpha, cfg.alpha))
            cx, cy = int(rng.integers(size)), int(rng.integers(size))
            box = cutmix_box(lam, cx, cy, size, size)
            area = (box[2] - box[0]) * (box[3] - box[1]) / (size * size)
            params: dict[str, Any] = {"class_a": class_a, "class_b": class_b, "lam_sampled": lam, "centre": [cx, cy],
                                      "box": list(box), "area_pixel": area, "image_size": size}
            if factor is not None:
                params["area_latent"] = float(latent_mask(box, size, size, factor, cfg.latent_mask).mean())
            if cfg.label_weight == "sampled":
                weight = 1.0 - lam  # P1 gives λ to the class outside the box (B here): A gets 1 - λ
            else:
                weight = params["area_latent"] if cfg.label_area == "latent" else area
            params["label_weight_a"] = weight
            requests.append(GenerationRequest(index=index, seed=request_seed, target_class=class_a,
                                              source_classes=(class_b,), lam=weight, params=params))
        return requests

    # -- generation -----------------------------------------------------------------------------

    def sampler_settings(self, ctx: MethodContext) -> dict:
        """Steps, guidance, resolution and scheduler after applying the profile's defaults."""
        return sampler_settings(self.config, ctx)

    def label(self, request: GenerationRequest, num_classes: int) -> np.ndarray:
        """``w e_A + (1 - w) e_B`` with ``w = request.lam`` (the plan's label weight of A)."""
        vec = np.zeros(num_classes, dtype=np.float64)
        vec[request.params["class_a"]] += float(request.lam)
        vec[request.params["class_b"]] += 1.0 - float(request.lam)
        return vec

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Batched NoiseCutMix sampling (``ctx.batch_size`` requests per UNet call); one sample per request."""
        from diffusers.utils.torch_utils import randn_tensor

        from augbench.diffusion import pipelines as diffusion

        if not requests:
            return []
        cfg = self.config
        settings = self.sampler_settings(ctx)
        size = settings["image_size"]
        wrong = [r.index for r in requests if r.params["image_size"] != size]
        if wrong:
            raise ValueError(f"requests {wrong[:5]} were planned at {requests[0].params['image_size']} px but the "
                             f"sampler runs at {size} px; plan and generate with the same image_size")
        from augbench.diffusion.concepts import prompting_pipeline

        warm, prompt_of = prompting_pipeline(ctx, cfg.concepts if cfg.uses_concepts else None)

        def prompt(label: int) -> str:
            return prompt_of(label, cfg.prompt_template)

        pipe = diffusion.pipeline_view(warm, settings["scheduler"])
        factor = pipe.vae_scale_factor
        channels = pipe.unet.config.in_channels
        prompts = {label: prompt(label) for r in requests for label in (r.params["class_a"], r.params["class_b"])}
        warm.embeddings.get(list(dict.fromkeys([*prompts.values(), cfg.negative_prompt])))  # one encoder call
        out: list[SyntheticSample] = []
        for start in range(0, len(requests), ctx.batch_size):
            chunk = list(requests[start:start + ctx.batch_size])
            n = len(chunk)
            prompts_a = [prompts[r.params["class_a"]] for r in chunk]
            prompts_b = [prompts[r.params["class_b"]] for r in chunk]
            masks = torch.stack([latent_mask(r.params["box"], size, size, factor, cfg.latent_mask) for r in chunk])
            # diffusers' prepare_latents: one generator per row, times the scheduler's init_noise_sigma
            latents = randn_tensor((n, channels, size // factor, size // factor),
                                   generator=[make_generator(r.seed) for r in chunk], device=pipe.unet.device,
                                   dtype=pipe.unet.dtype) * pipe.scheduler.init_noise_sigma
            final = mixed_noise_denoise(pipe, latents, warm.embeddings.get(prompts_a), warm.embeddings.get(prompts_b),
                                        warm.embeddings.get([cfg.negative_prompt] * n), masks,
                                        num_inference_steps=settings["num_inference_steps"],
                                        guidance_scale=settings["guidance_scale"])
            for r, a, b, image in zip(chunk, prompts_a, prompts_b, diffusion.decode_latents(pipe, final), strict=True):
                out.append(SyntheticSample(image, self.label(r, ctx.num_classes),
                                           self.sample_provenance(r, prompt=a, prompt_b=b, sampler=settings)))
        return out
