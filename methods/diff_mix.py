"""The Diff-Mix family's img2img strategies: Real-Mix, Diff-AUG and Diff-Mix (METHODS_SPEC §3.7).

Diff-Mix's reference code runs six strategies through one sampler [DM scripts/sample_mp.py]; the
harness does the same. The task list — ``N = expansion × |train|`` tasks, classes drawn per task,
a random real image of the source class, a fixed or drawn strength — is
:func:`augbench.diffusion.sampling.plan_translations`, and the img2img loop is
:func:`augbench.diffusion.sampling.run_edits` (DPM-Solver++ 25 steps, w = 7.5, source stretched to the model
size and the edit resized back, §3.7 step 6). The members differ only in the model and the classes:

==============  ===========  =============  =====================================================
id              SD weights   classes        where
==============  ===========  =============  =====================================================
``real_mix``    vanilla      a → b (inter)  here
``diff_aug``    ``lora_ti``  c → c (intra)  here
``diff_mix``    ``lora_ti``  a → b (inter)  here
``diff_gen``    ``lora_ti``  text-to-image  ``methods/sd_random.py`` (shares SD-random's loop)
real-aug        vanilla      c → c (intra)  ``real_guidance.dm_real_aug`` (same task planner)
real-gen        vanilla      text-to-image  ``sd_random.real_gen``
==============  ===========  =============  =====================================================

HARNESS defaults (§3.7): expansion 5; classes drawn as DM does (``multinomial``; ``exact_per_class``
is an option); strength 0.7 fixed (DM README text) with presets ``uniform`` {0.3, 0.5, 0.7, 0.9}
(``--strength_strategy uniform``), ``scripts`` 0.8 (``scripts/sample.sh``) and ``argparse`` 0.5 (the
argparse default); the long-tail source quirk (§3.7 step 4: sources drawn from the whole imbalanced
split) is the preset ``lt_source_quirk``, off by default. Fine-tuned prompts are
``a photo of a <class_b> [meta]`` with the ``lora_ti`` artifact (§1.4) shared with Diff-Gen,
NoiseCutMix and Diff-II; vanilla prompts ``a photo of a {name_b} [meta]``.

Labels (§3.7, DM ``dataset/base.py``): every image is stored with its normalised soft label
``(1 - s**γ) e_a + s**γ e_b`` (γ of the card) and the mixing metadata ``mix = {a, b, s}``; training
applies ``σ [(1 - s**γ) e_a + s**γ e_b]`` with the integration's γ and σ (0.8, 0.9; σ = 1.0 for CUB-LT)
when the set is loaded, then label smoothing in the loss (§5.7). Training integration (§4 (d)):
inter-class methods replace real samples with p = 0.5 by an image of the whole synthetic pool with its
soft label (``global_pool``); the intra-class Diff-AUG draws from its own class with hard labels
(``same_class``, as P2 uses it for per-class methods).
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
    CLASS_DRAWS,
    SOURCE_DRAWS,
    check_strengths,
    plan_translations,
    run_edits,
    sampler_settings,
)
from augbench.synthetic.loading import diff_mix_label

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["DiffAug", "DiffAugConfig", "DiffMix", "DiffMixConfig", "RealMix", "RealMixConfig"]

# DM's soft-label settings (§3.7): γ = 0.8 in every script; σ = 0.9 for the fine-grained datasets
SOFT_LABELS = TrainingIntegration(replacement_mode="global_pool", replacement_p=0.5, labels="diff_mix",
                                  label_gamma=0.8, label_sigma=0.9)
HARD_LABELS = TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard")

PRESETS = {
    "uniform": {"strengths": (0.3, 0.5, 0.7, 0.9)},
    "scripts": {"strength": 0.8},
    "argparse": {"strength": 0.5},
    "exact_per_class": {"class_draw": "exact_per_class"},
    "lt_source_quirk": {"source_draw": "whole_split"},
}


@dataclass(frozen=True)
class DiffMixConfig(MethodConfig):
    prompt_template: str = param("a photo of a {token} {meta}", "prompt of the target class b; {token}: its learned "
                                 "token, {name}: its name, {meta}: the meta word",
                                 paper="DM: 'a photo of a <class_b> [meta]' [§3.7 step 5]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    expansion: float = param(5.0, "tasks = expansion x |train| (DM --syn_dataset_mulitiplier)",
                             paper="5 [§3.7 step 1; P2 expansion rate 5]")
    class_draw: str = param("multinomial", "classes drawn per task, or target classes cycled (balanced)",
                            paper="DM: multinomial; HARNESS option exact_per_class [§3.7]", choices=CLASS_DRAWS)
    source_draw: str = param("of_class", "source image: random image of class a, or (DM long-tail quirk) of the "
                             "whole split", paper="DM LT: whole_split [§3.7 step 4, DISAGREE]", choices=SOURCE_DRAWS)
    strength: float = param(0.7, "img2img strength s (§1.3)",
                            paper="DM README 0.7; scripts 0.8; argparse 0.5 [§3.7 step 3]")
    strengths: tuple[float, ...] = param((), "when given, s drawn per task from these",
                                         paper="DM uniform: (0.3, 0.5, 0.7, 0.9)")
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25)", paper="25 [§3.7 step 6]")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper="7.5 [§3.7 step 6]")
    image_size: int | None = param(None, "model resolution the sources are resized to (None: the profile's)",
                                   paper="512 [§3.7 step 6]")
    scheduler: str = param("dpmsolver++", "diffusers scheduler", paper="DPM-Solver++ [§3.7 step 6]",
                           choices=("dpmsolver++", "ddim", "pndm"))
    concepts: str | None = param("lora_ti", "concept-learning artifact (None: the vanilla model)",
                                 paper="fine-tuned: LoRA + tokens [§1.4]", choices=(None, "lora_ti"))
    concept_steps: int | None = param(None, "training steps of the lora_ti artifact (None: the profile's recipe)")

    def validate(self) -> None:
        super().validate()
        check_strengths(self.strength, self.strengths)
        if self.expansion < 0:
            raise ValueError(f"expansion must be >= 0, got {self.expansion}")
        if "{token}" in self.prompt_template and not self.concepts:
            raise ValueError("prompt_template uses {token}, which needs concepts = 'lora_ti'; use {name} for the "
                             "vanilla model")


@dataclass(frozen=True)
class RealMixConfig(DiffMixConfig):
    prompt_template: str = param("a photo of a {name} {meta}", "prompt of the target class b",
                                 paper="DM vanilla: 'a photo of a {name_b} [meta]' [§3.7 step 5]")
    concepts: str | None = param(None, "concept-learning artifact (None: the vanilla model)",
                                 paper="real-mix: vanilla SD [§3.7]", choices=(None, "lora_ti"))


DiffAugConfig = DiffMixConfig


class _Translation(OfflineMethod):
    """The shared sampler: plan DM tasks, img2img each source towards its target class."""

    inter_class: ClassVar[bool] = True
    presets: ClassVar[dict] = PRESETS
    # the tiny test profile samples 2 steps, where strength 0.3 would run none (§1.3)
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 4}

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        if not self.config.concepts:
            return []
        from augbench.diffusion.concepts import concept_spec

        return [concept_spec(self.config.concepts, ctx.profile, self.config.concept_steps)]

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        requests = plan_translations(lambda i: self.request_seed(seed, i), subset, budget, expansion=cfg.expansion,
                                     inter_class=self.inter_class, strength=cfg.strength, strengths=cfg.strengths,
                                     class_draw=cfg.class_draw, source_draw=cfg.source_draw)
        if ctx is not None and ctx.card is not None and not cfg.concepts:
            return [dataclasses.replace(r, prompt=ctx.card.prompt(r.target_class, cfg.prompt_template))
                    for r in requests]
        return requests

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion.concepts import prompting_pipeline

        if not requests:
            return []
        cfg = self.config
        warm, prompt = prompting_pipeline(ctx, cfg.concepts)
        prompts = [r.prompt or prompt(r.target_class, cfg.prompt_template) for r in requests]
        requests = [dataclasses.replace(r, prompt=p) for r, p in zip(requests, prompts, strict=True)]
        gamma = self.card.training.label_gamma

        def soft_label(r: GenerationRequest):
            # stored normalised (σ = 1); the training integration's σ, γ apply when the set is loaded
            return diff_mix_label(r.source_classes[0], r.target_class, r.strength, ctx.num_classes, gamma)

        return run_edits(self, requests, ctx, warm, prompts, negative_prompt=cfg.negative_prompt,
                         settings=sampler_settings(cfg, ctx), label=soft_label if self.inter_class else None)


class RealMix(_Translation):
    """Real-Mix (DM ``real-mix``): vanilla img2img of an image of class a with the prompt of class b."""

    family: ClassVar[str] = "real_mix"
    Config: ClassVar[type[MethodConfig]] = RealMixConfig
    inter_class: ClassVar[bool] = True
    card: ClassVar[MethodCard] = MethodCard(
        summary="Real-Mix: vanilla SD img2img of a real image of class a towards the prompt of class b",
        changes="adds expansion x |train| inter-class translations (classes a, b uniform and independent)",
        labels="soft: sigma * [(1 - s**gamma) e_a + s**gamma e_b] (gamma 0.8, sigma 0.9)",
        cost="per image: floor(N*s) UNet passes at batch 2 (CFG in one call), one VAE encode and decode",
        references=("METHODS_SPEC §3.7", "METHODS_SPEC §4 (d)", "P2 Tab.1-3 'Real-Mix'"),
        training=SOFT_LABELS,
    )


class DiffAug(_Translation):
    """Diff-AUG (DM ``diff-aug``): intra-class img2img with the fine-tuned model (``lora_ti``)."""

    family: ClassVar[str] = "diff_aug"
    Config: ClassVar[type[MethodConfig]] = DiffAugConfig
    inter_class: ClassVar[bool] = False
    card: ClassVar[MethodCard] = MethodCard(
        summary="Diff-AUG: img2img of a real image of class c with the learned token of c (LoRA + tokens)",
        changes="adds expansion x |train| intra-class edits from the concept-learned model",
        labels="hard: the class c (DM: sigma * e_c)",
        cost="concept learning (lora_ti) once per subset, shared; per image floor(N*s) UNet passes (CFG in one call)",
        references=("METHODS_SPEC §3.7", "METHODS_SPEC §1.4", "METHODS_SPEC §4 (b)", "P2 Tab.1-3 'Diff-AUG'"),
        training=HARD_LABELS,
    )


class DiffMix(_Translation):
    """Diff-Mix (DM ``diff-mix``): inter-class img2img with the fine-tuned model (``lora_ti``)."""

    family: ClassVar[str] = "diff_mix"
    Config: ClassVar[type[MethodConfig]] = DiffMixConfig
    inter_class: ClassVar[bool] = True
    card: ClassVar[MethodCard] = MethodCard(
        summary="Diff-Mix: img2img of a real image of class a towards the learned token of class b (LoRA + tokens)",
        changes="adds expansion x |train| inter-class translations from the concept-learned model",
        labels="soft: sigma * [(1 - s**gamma) e_a + s**gamma e_b] (gamma 0.8, sigma 0.9)",
        cost="concept learning (lora_ti) once per subset, shared; per image floor(N*s) UNet passes (CFG in one call)",
        references=("METHODS_SPEC §3.7", "METHODS_SPEC §1.4", "METHODS_SPEC §4 (d)", "P2 Tab.1-3 'Diff-Mix'"),
        training=SOFT_LABELS,
    )
