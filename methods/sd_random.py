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

The ``finetuned`` preset is §3.1's second variant: the ``lora_ti`` artifact (Diff-Mix's LoRA + one
learned token per class, trained on the cell's training part) with ``a photo of a <class_i> [meta]``.
The family ``diff_gen`` (Diff-Mix's ``diff-gen`` strategy, §3.7) is the same generator with that
configuration as its default; it is the first method that reuses an artifact other methods
(Diff-AUG, Diff-Mix, NoiseCutMix, Diff-II) share. ``real_gen`` is Diff-Mix's ``real-gen`` (§3.3):
vanilla model, classes drawn uniformly (HARNESS prompt with the meta word; the output-size rule of
the reference code — resize to a random real image of the class — is not applied: SD's size is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from augbench.contract import (
    ArtifactSpec,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    MethodContext,
    OfflineMethod,
    SyntheticSample,
    TrainingIntegration,
    param,
)
from augbench.diffusion.sampling import (
    ALLOCATIONS,
    allocate,
    plan_text_to_image,
    run_text_to_image,
    sampler_settings,
)

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["DiffGen", "DiffGenConfig", "SDRandom", "SDRandomConfig", "allocate"]

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
    concepts: str | None = param(
        None, "generate with a concept-learning artifact (lora_ti: Diff-Mix LoRA + class tokens) and {token} prompts",
        paper="UNSPEC in P1; HARNESS 'finetuned' variant [§3.1]", choices=(None, "lora_ti", "ti"),
    )
    concept_steps: int | None = param(None, "training steps of the concept artifact (None: the profile's recipe)")

    def validate(self) -> None:
        super().validate()
        if self.expansion < 0:
            raise ValueError(f"expansion must be >= 0, got {self.expansion}")
        try:
            self.prompt_template.format(name="x", meta="y", token="<t>")
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} may only use the placeholders {{name}}, {{meta}} "
                "and (with concepts) {token}"
            ) from exc
        if "{token}" in self.prompt_template and not self.concepts:
            raise ValueError("prompt_template uses {token}, which needs concepts = 'lora_ti' (or 'ti')")


class SDRandom(OfflineMethod):
    """SD-random (METHODS_SPEC §3.1): class-prompted text-to-image images with hard labels."""

    family: ClassVar[str] = "sd_random"
    Config: ClassVar[type[MethodConfig]] = SDRandomConfig
    presets: ClassVar[dict] = {
        "p1_article": {"prompt_template": "a photo of a {name}"},
        "p1_no_article": {"prompt_template": "a photo of {name}"},
        "finetuned": {"concepts": "lora_ti", "prompt_template": "a photo of a {token} {meta}"},
        "real_gen": {"allocation": "uniform"},
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

    # -- artifacts and planning ------------------------------------------------------------------

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        """The concept-learning artifact of the ``finetuned`` variant / ``diff_gen``; none for vanilla SD."""
        if not self.config.concepts:
            return []
        from augbench.diffusion.concepts import concept_spec

        return [concept_spec(self.config.concepts, ctx.profile, self.config.concept_steps)]


    def plan(
        self, subset: Subset, budget: int | None, seed: int, *, ctx: MethodContext | None = None
    ) -> list[GenerationRequest]:
        """Requests ordered by class, ``budget`` (default ``round(expansion * |subset|)``) in total."""
        cfg = self.config
        num_classes = ctx.num_classes if ctx is not None and ctx.card is not None else max(subset.labels, default=-1) + 1
        with_names = ctx is not None and ctx.card is not None and not cfg.concepts  # tokens: known when loaded
        prompt = (lambda label: ctx.card.prompt(label, cfg.prompt_template)) if with_names else None
        return plan_text_to_image(lambda i: self.request_seed(seed, i), subset, budget, expansion=cfg.expansion,
                                  allocation=cfg.allocation, num_classes=num_classes, prompt=prompt)

    # -- generation -----------------------------------------------------------------------------

    def sampler_settings(self, ctx: MethodContext) -> dict:
        """Steps, guidance, resolution and scheduler after applying the profile's defaults."""
        return sampler_settings(self.config, ctx)

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Batched text-to-image; one ``SyntheticSample`` per request, in order."""
        from augbench.diffusion.concepts import (
            prompting_pipeline,  # diffusers is imported only when generating
        )

        if not requests:
            return []
        cfg = self.config
        warm, prompt = prompting_pipeline(ctx, cfg.concepts)
        prompts = [r.prompt or prompt(r.target_class, cfg.prompt_template) for r in requests]
        return run_text_to_image(self, requests, ctx, warm, prompts, negative_prompt=cfg.negative_prompt,
                                 settings=self.sampler_settings(ctx))


@dataclass(frozen=True)
class DiffGenConfig(SDRandomConfig):
    prompt_template: str = param("a photo of a {token} {meta}", "prompt; {token} = the class's learned token",
                                 paper="DM: 'a photo of a <class_i> [meta]' [§1.7]")
    concepts: str | None = param("lora_ti", "the concept-learning artifact", paper="DM: LoRA + tokens [§1.4]",
                                 choices=(None, "lora_ti", "ti"))


class DiffGen(SDRandom):
    """Diff-Gen (METHODS_SPEC §3.7, DM ``diff-gen``): text-to-image with the ``lora_ti`` concepts.

    SD-random's ``finetuned`` configuration as a family of its own, so suites and tables name it as
    the papers do; it shares the ``lora_ti`` artifact of a subset with Diff-AUG, Diff-Mix, NoiseCutMix
    and Diff-II.
    """

    family: ClassVar[str] = "diff_gen"
    Config: ClassVar[type[MethodConfig]] = DiffGenConfig
    presets: ClassVar[dict] = {}
    card: ClassVar[MethodCard] = MethodCard(
        summary="Diff-Gen: text-to-image with Diff-Mix's LoRA + learned class tokens (a photo of a <class_i> [meta])",
        changes="adds synthetic images of every class from the concept-learned model",
        labels="hard: one-hot of the prompted class",
        cost="concept learning (lora_ti) once per subset, shared; then as SD-random",
        references=("METHODS_SPEC §3.7", "METHODS_SPEC §1.4", "METHODS_SPEC §3.1 'finetuned'"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

