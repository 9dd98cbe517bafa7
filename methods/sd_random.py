"""SD-random: vanilla text-to-image synthetic data (METHODS_SPEC §3.1; P1 baseline).

P1 generates images "randomly with Stable Diffusion" from a class-name prompt [P1 §4.1 L95] with SD
v1.5, CFG 7.5 and DPM-Solver++ in 25 steps [P1 §4.3 L113], as many images as the real training set
[P1 §4.3 L115]. The harness:

* loads the profile's pipeline with ``StableDiffusionPipeline.from_pretrained(profile.pipeline,
  revision=..., local_files_only=...)``, safety checker off (METHODS_SPEC §1.1), and samples with a
  ``DPMSolverMultistepScheduler`` (DPM-Solver++) built from the pipeline's scheduler config;
* uses the prompt template ``a photo of a {name} {meta}`` by default (HARNESS; this is the CLIP-score
  text of DESIGN.md "Metrics" and gives the meta word the fine-grained names need). P1's two wordings
  are presets: ``p1_article`` = ``a photo of a {name}`` [P1 L95], ``p1_no_article`` =
  ``a photo of {name}`` [P1 L113] (DISAGREE within P1, METHODS_SPEC §1.7);
* allots ``total = round(expansion * |subset|)`` images to classes proportionally to the real class
  counts (largest remainder, ties to the lower class index), so the synthetic set mirrors the real one
  (HARNESS §3.1: "how classes are allotted is UNSPEC");
* emits hard one-hot labels.

Generation is batched (``ctx.batch_size`` requests per pipeline call, mixed classes allowed); every
request's initial latent comes from its own generator seeded with ``derive_seed(run seed, method id,
request index)``, so batched and unbatched generation give the same images (to float tolerance).
Prompt embeddings are encoded once per distinct prompt (plus ``""`` once) and passed as
``prompt_embeds``; CFG runs uncond + cond in one UNet call (PERF_NOTES §6).

The ``finetuned`` variant of §3.1 (Diff-Mix concept-learned checkpoint, ``a photo of a <class_i>
[meta]``) needs the concept-learning artifacts and is not part of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from benchmark.contract import (
    GenerationRequest,
    MethodCard,
    MethodConfig,
    MethodContext,
    OfflineMethod,
    SyntheticSample,
    TrainingIntegration,
    param,
)
from benchmark.sampling import ALLOCATIONS, allocate, plan_text_to_image, run_text_to_image, sampler_settings

if TYPE_CHECKING:
    from benchmark.data.core import Subset

__all__ = ["SDRandom", "SDRandomConfig", "allocate"]

@dataclass(frozen=True)
class SDRandomConfig(MethodConfig):
    prompt_template: str = param(
        "a photo of a {name} {meta}",
        "prompt; {name} = class name (underscores -> spaces), {meta} = dataset meta word",
        paper="P1: 'a photo of a {name}' [L95] vs 'a photo of {name}' [L113] (presets p1_article, p1_no_article)",
    )
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    expansion: float = param(
        1.0, "synthetic set size as a multiple of the real subset size", paper="1.0 (100%) [P1 §4.3 L115]"
    )
    allocation: str = param(
        "proportional", "how images are allotted to classes", paper="UNSPEC; HARNESS proportional [§3.1]",
        choices=ALLOCATIONS,
    )
    num_inference_steps: int | None = param(
        None, "sampler steps (None: the profile's, 25 for sd15)", paper="25 (DPM-Solver++) [P1 §4.3 L113]"
    )
    guidance_scale: float | None = param(None, "CFG scale w (None: the profile's, 7.5)", paper="7.5 [§1.2]")
    image_size: int | None = param(None, "output resolution (None: the profile's, 512 for sd15)", paper="512")
    scheduler: str = param(
        "dpmsolver++", "diffusers scheduler built from the pipeline's config", paper="DPM-Solver++ [P1 §4.3]",
        choices=("dpmsolver++", "ddim", "pndm"),
    )

    def validate(self) -> None:
        super().validate()
        if self.expansion < 0:
            raise ValueError(f"expansion must be >= 0, got {self.expansion}")
        try:
            self.prompt_template.format(name="x", meta="y")
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} may only use the placeholders {{name}} and {{meta}}"
            ) from exc


class SDRandom(OfflineMethod):
    """SD-random (METHODS_SPEC §3.1): class-prompted text-to-image images with hard labels."""

    family: ClassVar[str] = "sd_random"
    Config: ClassVar[type[MethodConfig]] = SDRandomConfig
    presets: ClassVar[dict] = {
        "p1_article": {"prompt_template": "a photo of a {name}"},
        "p1_no_article": {"prompt_template": "a photo of {name}"},
    }
    card: ClassVar[MethodCard] = MethodCard(
        summary="SD-random: vanilla Stable Diffusion text-to-image from a class-name prompt",
        changes="adds synthetic images of every class (no real image is used as input)",
        labels="hard: one-hot of the prompted class",
        cost=(
            "per image: num_inference_steps UNet passes at batch 2 (CFG, one call), one VAE decode; "
            "text encoder once per class"
        ),
        references=("METHODS_SPEC §3.1", "METHODS_SPEC §3.2", "P1 §4.1 L95, §4.3 L113-115"),
        # P1 concatenates its 100 % synthetic set with the real one (METHODS_SPEC §4, HARNESS for P1)
        training=TrainingIntegration(replacement_mode="concat", replacement_p=0.5, labels="as_generated"),
    )

    # -- planning -------------------------------------------------------------------------------

    def plan(
        self, subset: Subset, budget: int | None, seed: int, *, ctx: MethodContext | None = None
    ) -> list[GenerationRequest]:
        """Requests ordered by class, ``budget`` (default ``round(expansion * |subset|)``) in total."""
        cfg = self.config
        num_classes = ctx.num_classes if ctx is not None and ctx.card is not None else max(subset.labels, default=-1) + 1
        prompt = (lambda label: ctx.card.prompt(label, cfg.prompt_template)) if ctx is not None and ctx.card else None
        return plan_text_to_image(lambda i: self.request_seed(seed, i), subset, budget, expansion=cfg.expansion,
                                  allocation=cfg.allocation, num_classes=num_classes, prompt=prompt)

    # -- generation -----------------------------------------------------------------------------

    def sampler_settings(self, ctx: MethodContext) -> dict:
        """Steps, guidance, resolution and scheduler after applying the profile's defaults."""
        return sampler_settings(self.config, ctx)

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Batched text-to-image; one ``SyntheticSample`` per request, in order."""
        from benchmark import diffusion  # diffusers is imported only when generating

        if not requests:
            return []
        card = ctx.require_card()
        prompts = [r.prompt or card.prompt(r.target_class, self.config.prompt_template) for r in requests]
        return run_text_to_image(self, requests, ctx, diffusion.load_warm_pipeline(ctx), prompts,
                                 negative_prompt=self.config.negative_prompt, settings=self.sampler_settings(ctx))
