"""Real-Guidance: intra-class img2img of real images with the vanilla model (METHODS_SPEC §3.5).

HARNESS default (§3.5): vanilla SD img2img, DPM-Solver++ 25 steps, w = 7.5, strength 0.5, prompt
``a photo of a {class name} {meta}``, every real image edited ``edits_per_image`` times (P2's expansion
rate 5), hard label of the source class. Presets carry the reference implementations:

* ``daf`` — DA-Fusion's ``RealGuidance`` [DAF real_guidance.py]: the pipeline's PNDM scheduler with 50
  steps, plain-name prompt ``a photo of a {class name}``, 10 edits per image.
* ``dm_real_aug`` — Diff-Mix's ``real-aug`` [DM sample_mp.py]: the Diff-Mix family's task planner
  (``augbench.diffusion.sampling.plan_translations``, shared with ``real_mix``/``diff_aug``/``diff_mix``):
  ``edits_per_image × |train|`` tasks, one class drawn uniformly per task, a uniformly random real
  image of that class as the source, fixed strength 0.5 (argparse default); ``dm_real_aug_uniform``
  draws the strength per task from {0.3, 0.5, 0.7, 0.9}.

Training integration (§4): a per-class method, so same-class replacement with hard labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from augbench.contract import (
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
    EDIT_SOURCES,
    check_strengths,
    plan_edits,
    plan_translations,
    run_edits,
    sampler_settings,
)

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["RealGuidance", "RealGuidanceConfig"]


@dataclass(frozen=True)
class RealGuidanceConfig(MethodConfig):
    prompt_template: str = param("a photo of a {name} {meta}", "prompt; {name} = class name, {meta} = meta word",
                                 paper="DAF: 'a photo of a {name}' [§3.5]; DM: with [meta]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    edits_per_image: int = param(5, "edits of every real image (M)", paper="DAF scripts: 10; P2 expansion: 5 [§3.5]")
    source: str = param("each", "each real image M times; a random real image of the class per edit; or Diff-Mix's "
                        "tasks (class drawn per task, random image of it)",
                        paper="DAF: each; DM real-aug: dm_tasks [§3.5, §3.7]", choices=(*EDIT_SOURCES, "dm_tasks"))
    strength: float = param(0.5, "img2img strength (§1.3)", paper="DAF 0.5; DM --aug_strength 0.5 [§3.5]")
    strengths: tuple[float, ...] = param((), "when given, strength drawn per image from these",
                                         paper="DM 'uniform': (0.3, 0.5, 0.7, 0.9) [§3.5]")
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25)", paper="DAF 50 (PNDM)")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper="7.5 [§3.5]")
    image_size: int | None = param(None, "model resolution the sources are resized to (None: the profile's)",
                                   paper="512 [§3.5]")
    scheduler: str = param("dpmsolver++", "diffusers scheduler", paper="DAF: PNDM; DM: DPM-Solver++ [§3.5]",
                           choices=("dpmsolver++", "ddim", "pndm"))

    def validate(self) -> None:
        super().validate()
        check_strengths(self.strength, self.strengths)
        if self.edits_per_image < 1:
            raise ValueError(f"edits_per_image must be >= 1, got {self.edits_per_image}")


class RealGuidance(OfflineMethod):
    """img2img of real images with the class-name prompt on the vanilla model."""

    family: ClassVar[str] = "real_guidance"
    Config: ClassVar[type[MethodConfig]] = RealGuidanceConfig
    presets: ClassVar[dict] = {
        "daf": {"scheduler": "pndm", "num_inference_steps": 50, "prompt_template": "a photo of a {name}",
                "edits_per_image": 10},
        "dm_real_aug": {"source": "dm_tasks", "strength": 0.5},
        "dm_real_aug_uniform": {"source": "dm_tasks", "strengths": (0.3, 0.5, 0.7, 0.9)},
    }
    # the tiny test profile samples 2 steps, where strength 0.25-0.3 would run none (§1.3)
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 4}
    card: ClassVar[MethodCard] = MethodCard(
        summary="Real-Guidance: img2img of each real image with the class-name prompt (vanilla model)",
        changes="adds M edits of every real image, same class",
        labels="hard: the source image's class",
        cost="per image: floor(N*s) UNet passes at batch 2 (CFG in one call), one VAE encode and decode",
        references=("METHODS_SPEC §3.5", "METHODS_SPEC §1.3", "P2 §4.1 L178"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        seeds = lambda i: self.request_seed(seed, i)  # noqa: E731
        if cfg.source == "dm_tasks":
            requests = plan_translations(seeds, subset, budget, expansion=cfg.edits_per_image, inter_class=False,
                                         strength=cfg.strength, strengths=cfg.strengths)
        else:
            requests = plan_edits(seeds, subset, budget, edits_per_image=cfg.edits_per_image, source=cfg.source,
                                  strength=cfg.strength, strengths=cfg.strengths)
        if ctx is not None and ctx.card is not None:
            return [_with_prompt(r, ctx.card.prompt(r.target_class, cfg.prompt_template)) for r in requests]
        return requests

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion

        if not requests:
            return []
        card = ctx.require_card()
        prompts = [r.prompt or card.prompt(r.target_class, self.config.prompt_template) for r in requests]
        return run_edits(self, requests, ctx, diffusion.load_warm_pipeline(ctx), prompts,
                         negative_prompt=self.config.negative_prompt, settings=sampler_settings(self.config, ctx))


def _with_prompt(request: GenerationRequest, prompt: str) -> GenerationRequest:
    import dataclasses

    return dataclasses.replace(request, prompt=prompt)
