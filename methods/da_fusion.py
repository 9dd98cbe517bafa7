"""DA-Fusion: per-class textual inversion, then img2img of every real image with a random strength
(METHODS_SPEC §3.6, §1.5).

HARNESS default (§3.6): the ``ti`` artifact (one learned token per class, only its embedding trained,
on the cell's training part), img2img of every real image ``edits_per_image`` times (P2's expansion
rate 5) with the strength drawn per image uniformly from {0.25, 0.5, 0.75, 1.0} (DAF's parallel
composition of four augmenters), 50 PNDM steps, w = 7.5, prompt ``a photo of a <token>`` (learned
token only, no meta word), hard label of the source class. Presets:

* ``single_strength`` — DAF's single-augmenter scripts: s = 0.5.
* ``dpm25`` — 25 DPM-Solver++ steps instead of 50 PNDM (§3.6 HARNESS option).
* ``daf_sd14`` — DAF's own base model, SD v1.4, for tokens and edits (where the profile offers one:
  sd15's ``extra["sd14_pipeline"]``, ``AUGBENCH_SD15_SD14`` for a local copy), 10 edits per image.

Not implemented: masking and erasure (they need object masks / ESD checkpoints the fine-grained
datasets do not have).

Training integration (§4 (a)): each real sample is replaced with probability 0.5 by one of *its own*
edits (``own_edits``), hard labels.
"""

from __future__ import annotations

import dataclasses
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
    check_strengths,
    plan_edits,
    run_edits,
    sampler_settings,
    sd14_pipeline,
)

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["DAFusion", "DAFusionConfig"]


@dataclass(frozen=True)
class DAFusionConfig(MethodConfig):
    prompt_template: str = param("a photo of a {token}", "prompt; {token} = the class's learned token, {meta}",
                                 paper="DAF: 'a photo of a <class_name>' [§3.6]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    edits_per_image: int = param(5, "edits of every real image (M)", paper="DAF scripts: 10; P2 expansion: 5 [§3.6]")
    strengths: tuple[float, ...] = param((0.25, 0.5, 0.75, 1.0), "strength drawn per image from these",
                                         paper="DAF stacking scripts [§3.6]")
    strength: float = param(0.5, "the strength when `strengths` is empty", paper="DAF single-strength: 0.5")
    num_inference_steps: int | None = param(50, "sampler steps (None: the profile's)", paper="DAF: 50 (PNDM) [§3.6]")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper="7.5 [§3.6]")
    image_size: int | None = param(None, "model resolution the sources are resized to (None: the profile's)",
                                   paper="512 [§3.6]")
    scheduler: str = param("pndm", "diffusers scheduler", paper="DAF: PNDM [§3.6]",
                           choices=("dpmsolver++", "ddim", "pndm"))
    concept_steps: int | None = param(None, "training steps per class of the `ti` artifact (None: the profile's recipe)",
                                      paper="DAF: 1,000 [§1.5]")
    base_model: str | None = param(None, "None: the profile's model; sd14: the profile's SD v1.4 (tokens and edits)",
                                   paper="DAF: SD v1.4 [§1.5]; HARNESS: the profile's (SD v1.5) [§3.6]",
                                   choices=(None, "sd14"))

    def validate(self) -> None:
        super().validate()
        check_strengths(self.strength, self.strengths)
        if self.edits_per_image < 1:
            raise ValueError(f"edits_per_image must be >= 1, got {self.edits_per_image}")


class DAFusion(OfflineMethod):
    """img2img of every real image with its class's learned textual-inversion token."""

    family: ClassVar[str] = "da_fusion"
    Config: ClassVar[type[MethodConfig]] = DAFusionConfig
    presets: ClassVar[dict] = {
        "single_strength": {"strengths": (), "strength": 0.5},
        "dpm25": {"scheduler": "dpmsolver++", "num_inference_steps": 25},
        "daf_sd14": {"base_model": "sd14", "edits_per_image": 10},
    }
    # the tiny test profile samples 2 steps, where strength 0.25-0.3 would run none (§1.3)
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 4}
    card: ClassVar[MethodCard] = MethodCard(
        summary="DA-Fusion: per-class textual inversion + img2img of every real image at a random strength",
        changes="adds M edits of every real image, same class, prompted with the class's learned token",
        labels="hard: the source image's class",
        cost="concept learning (ti) once per subset; per image floor(N*s) UNet passes (CFG in one call)",
        references=("METHODS_SPEC §3.6", "METHODS_SPEC §1.5", "METHODS_SPEC §4 (a)", "P2 §4.1 L178-180"),
        training=TrainingIntegration(replacement_mode="own_edits", replacement_p=0.5, labels="hard"),
    )

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        from augbench.diffusion.concepts import concept_recipe

        steps = {"steps": self.config.concept_steps} if self.config.concept_steps else {}
        return [ArtifactSpec("ti", concept_recipe("ti", ctx.profile, **steps), base_model=self.base_pipeline(ctx))]

    def base_pipeline(self, ctx: MethodContext) -> str | None:
        """The pipeline tokens are learned on and images edited with (``None``: the profile's)."""
        if self.config.base_model is None:
            return None
        return sd14_pipeline(ctx.profile, "da_fusion")

    def required_models(self, profile) -> dict[str, str]:
        """The pipeline tokens are learned on and images edited with: the profile's, or for ``daf_sd14`` only its
        SD v1.4 (``profile.extra["sd14_pipeline"]``, empty where the profile offers none), as :meth:`base_pipeline`."""
        if self.config.base_model is None:
            return super().required_models(profile)
        return {"sd14_pipeline": str(profile.extra.get("sd14_pipeline") or "")}

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        return plan_edits(lambda i: self.request_seed(seed, i), subset, budget, edits_per_image=cfg.edits_per_image,
                          source="each", strength=cfg.strength, strengths=cfg.strengths)

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion
        from augbench.diffusion.concepts import concept_prompt

        if not requests:
            return []
        card = ctx.require_card()
        base = ArtifactSpec("ti", base_model=self.base_pipeline(ctx)).context(ctx)
        warm = diffusion.load_warm_pipeline(base, artifact=ctx.artifacts["ti"])
        prompts = [concept_prompt(warm, card, r.target_class, self.config.prompt_template) for r in requests]
        requests = [dataclasses.replace(r, prompt=p) for r, p in zip(requests, prompts, strict=True)]
        return run_edits(self, requests, ctx, warm, prompts, negative_prompt=self.config.negative_prompt,
                         settings=sampler_settings(self.config, ctx))
