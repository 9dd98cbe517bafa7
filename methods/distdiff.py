"""DistDiff: img2img of real images with hierarchical-prototype energy guidance (Zhu et al., NeurIPS 2024).

"Distribution-Aware Data Expansion with Diffusion Models" [DD] (arXiv 2403.06741), code ``haoweiz23/DistDiff``
[DDc]. Training-free [DD abstract]: the class's real images are expanded through SD img2img while, at one
point of the sampler, the latent is refined so that the predicted image's features move towards the class
prototype and the nearest group prototype of the training part [DD Fig. 2]. The prototypes, the energy, the
guided step and every disagreement between paper and code are in ``augbench.diffusion.prototype_guidance``'s
docstring. The generation settings [DDc scripts/exps/expand_diff.sh; generate_data.py]:

* every training image is expanded ``num_images_per_prompt`` times, 5 in the scripts (README "5x expanded
  datasets"; ``single_exp.sh`` runs ``expand_diff.sh 5``), one image per (source, index);
* img2img of the source's VAE latent at strength 0.5 (``STRENGTH=0.5``; argparse default 0.9,
  generate_data.py:232-237, :1174-1176), CFG 7.5 with the unconditional prompt ``""`` (``SCALE=7.5``,
  :110-117), DDIM with 50 steps (:863, :1043), SD v1.4 in fp16 (``CompVis/stable-diffusion-v1-4``, :1039);
* the prompt is the dataset's template with the class name, e.g. ``a photo of a {}.`` (dataloader.py:52-62);
* the guide model is a ResNet-50 trained on the dataset; its hard label is the source's class (the image is saved
  in its class folder, :1232); the expanded set is concatenated with the real one for training
  (train_expanded_data_concat_original.py:148-156).

Not copied (the img2img convention every img2img method here shares, ``augbench.diffusion.pipelines``): DDc
encodes each source once, resized to 512 on its shorter side and randomly cropped, and reuses that one posterior
sample for all its expansions (dataloader.py:757-764, :788-811), in fp16, and saves the 512 px result; here each
request stretches its source to the model resolution, draws its own posterior sample and forward noise from its
seed, and the result is resized back to the source's size.

HARNESS default (what a researcher comparing methods expects): Real-Guidance's sampler and prompt (the profile's
SD, DPM-Solver++ with the profile's steps, w = 7.5, strength 0.5, ``a photo of a {name} {meta}``, 5 edits per
image), so DistDiff differs from Real-Guidance by its guidance alone; the guidance with the scripts' values
(rho 10, M = 2 steps with 40 % of the schedule left, one update, L-inf radius 0.2, K = 3, both energy weights 1)
on the profile's CLIP (embedded: the world's; sd15: ViT-B/32), with the transform starting at the identity and
unit features (the two code quirks left out, see ``prototype_guidance``). Presets:

* ``ddim50`` — the code's sampler: DDIM, 50 steps.
* ``code`` — ``ddim50`` plus the code's quirks: ``alpha ~ U[0, 1)``, ``beta ~ N(0, 1)`` before the update,
  raw (unnormalised) features in the energy, the prompt ``a photo of a {name}.``.
* ``direct`` — DDc's ``direct_guidance``: ``- rho dE/dz_t`` after each of the M steps, unit features.
* ``no_guidance`` — rho = 0: the same requests, seeds and sampler without guidance (= img2img), the paired
  ablation of the guidance.

Training integration (METHODS_SPEC §4): a per-class method, so same-class replacement (p = 0.5) with hard labels
as Real-Guidance, for paired comparisons; DDc concatenates real and expanded sets (a suite sets
``[training.distdiff] replacement_mode = "concat"`` for that).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

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
    one_hot,
    param,
)
from augbench.diffusion.sampling import check_strengths, load_sources, plan_edits, sampler_settings
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["DistDiff", "DistDiffConfig"]

_CODE = "DDc expand_diff.sh"


@dataclass(frozen=True)
class DistDiffConfig(MethodConfig):
    prompt_template: str = param("a photo of a {name} {meta}", "prompt; {name} = class name, {meta} = meta word",
                                 paper="DDc: dataset template, e.g. 'a photo of a {name}.' [dataloader.py:52-62]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='DDc: "" [:786]')
    edits_per_image: int = param(5, "expanded images of every real image", paper=f"{_CODE}: 5 (README: 5x)")
    strength: float = param(0.5, "img2img strength (METHODS_SPEC §1.3)", paper=f"{_CODE}: 0.5; argparse 0.9")
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25)", paper="DDc: 50 (DDIM)")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper=f"{_CODE}: 7.5")
    image_size: int | None = param(None, "model resolution the sources are resized to (None: the profile's)",
                                   paper="DDc: 512")
    scheduler: str = param("dpmsolver++", "diffusers scheduler", paper="DDc: DDIM [generate_data.py:863]",
                           choices=("dpmsolver++", "ddim"))
    guidance: str = param("transform", "transform: residual multiplicative transform of z_t; direct: gradient on z_t",
                          paper=f"{_CODE}: transform_guidance", choices=("transform", "direct"))
    rho: float = param(10.0, "guidance step size on the energy gradient (0: plain img2img)", paper=f"{_CODE}: 10")
    guidance_remaining: float = param(0.4, "share of the schedule left at the first guided step",
                                      paper=f"{_CODE}: START=20 of 50 steps")
    guidance_steps: int = param(2, "M: guided timesteps (energy averaged over their x0 predictions)",
                                paper=f"{_CODE}: PERIOD=2; argparse 1")
    updates: int = param(1, "gradient steps on the transform (transform only)", paper="DDc: 1 [:721-724]")
    radius: float = param(0.2, "L-inf bound of the transform's change to z_t (transform only)",
                          paper=f"{_CODE}: CON=0.2; argparse 0.8")
    transform_init: str = param("zero", "transform start: zero (identity) or random (alpha ~ U[0,1), beta ~ N(0,1))",
                                paper="DDc: random [:692-695]", choices=("zero", "random"))
    num_groups: int = param(3, "K: group-level prototypes per class (average-linkage clusters)",
                            paper=f"{_CODE}: K=3")
    class_weight: float = param(1.0, "weight of the class-prototype distance", paper="DDc --gs 1.0")
    group_weight: float = param(1.0, "weight of the nearest group-prototype distance", paper="DDc --ls 1.0")
    normalize_features: bool = param(True, "unit-normalise the features in the energy",
                                     paper="DDc: raw in transform_guidance [:705], unit in direct_guidance [:747]")

    def validate(self) -> None:
        super().validate()
        check_strengths(self.strength, ())
        expected = {"edits_per_image": (self.edits_per_image >= 1, ">= 1"),
                    "guidance_steps": (self.guidance_steps >= 1, ">= 1"), "updates": (self.updates >= 1, ">= 1"),
                    "num_groups": (self.num_groups >= 1, ">= 1"), "rho": (self.rho >= 0, ">= 0"),
                    "radius": (self.radius > 0, "> 0"), "class_weight": (self.class_weight >= 0, ">= 0"),
                    "group_weight": (self.group_weight >= 0, ">= 0"),
                    "guidance_remaining": (0 < self.guidance_remaining <= 1, "in (0, 1]")}
        bad = [f"{name} = {getattr(self, name)!r} (expected {rule})" for name, (ok, rule) in expected.items() if not ok]
        if bad:
            raise ConfigError(f"distdiff: {'; '.join(bad)}")


class DistDiff(OfflineMethod):
    """img2img of every real image, the latent refined towards its class's hierarchical CLIP prototypes."""

    family: ClassVar[str] = "distdiff"
    Config: ClassVar[type[MethodConfig]] = DistDiffConfig
    presets: ClassVar[dict] = {
        "ddim50": {"scheduler": "ddim", "num_inference_steps": 50},
        "code": {"scheduler": "ddim", "num_inference_steps": 50, "transform_init": "random",
                 "normalize_features": False, "prompt_template": "a photo of a {name}."},
        "direct": {"guidance": "direct"},
        "no_guidance": {"rho": 0.0},
    }
    # the tiny test profile samples 2 steps; 6 run 3 at strength 0.5, the guided window 2 of them
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 6}
    card: ClassVar[MethodCard] = MethodCard(
        summary="DistDiff: img2img of each real image, refined towards its class's CLIP class and group prototypes",
        changes="adds M edits of every real image, same class, pulled towards the class's feature distribution",
        labels="hard: the source image's class",
        cost=("per image floor(N*s) UNet passes at batch 2 (CFG in one call), plus at the guided step M more with "
              "backprop through UNet, VAE decoder and CLIP (per update); prototypes: one CLIP pass per training "
              "image, once per subset"),
        references=("Zhu et al., NeurIPS 2024, arXiv 2403.06741", "haoweiz23/DistDiff generate_data.py",
                    "METHODS_SPEC §1.3", "METHODS_SPEC §4"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    def image_size(self, ctx: MethodContext) -> int:
        return int(self.config.image_size or ctx.profile.image_size)

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        """The hierarchical prototypes of the training part (``distdiff_prototypes``: the profile's CLIP, K groups)."""
        from augbench.diffusion.prototype_guidance import PROTOTYPE_KIND, prototype_recipe

        return [ArtifactSpec(PROTOTYPE_KIND, prototype_recipe(ctx.profile, num_groups=self.config.num_groups,
                                                              image_size=self.image_size(ctx)))]

    def required_models(self, profile) -> dict[str, str]:
        """The profile's pipeline (img2img) and its CLIP (prototypes and energy)."""
        return {**super().required_models(profile), "clip": profile.clip}

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        requests = plan_edits(lambda i: self.request_seed(seed, i), subset, budget, edits_per_image=cfg.edits_per_image,
                              source="each", strength=cfg.strength)
        if ctx is not None and ctx.card is not None:
            return [dataclasses.replace(r, prompt=ctx.card.prompt(r.target_class, cfg.prompt_template))
                    for r in requests]
        return requests

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion
        from augbench.diffusion.prototype_guidance import guided_image_to_image
        from augbench.metrics.clip import profile_clip_scorer

        if not requests:
            return []
        cfg, card = self.config, ctx.require_card()
        settings = {**sampler_settings(cfg, ctx), "image_size": self.image_size(ctx)}
        warm = diffusion.load_warm_pipeline(ctx)
        pipe = diffusion.pipeline_view(warm, settings["scheduler"])
        prototypes, scorer = self._prototypes(ctx), profile_clip_scorer(ctx.profile, ctx.device)
        prompts = [r.prompt or card.prompt(r.target_class, cfg.prompt_template) for r in requests]
        warm.embeddings.get(list(dict.fromkeys([*prompts, cfg.negative_prompt])))
        out: list[SyntheticSample] = []
        for start in range(0, len(requests), ctx.batch_size):
            chunk, chunk_prompts = list(requests[start:start + ctx.batch_size]), prompts[start:start + ctx.batch_size]
            images, info = guided_image_to_image(
                pipe, load_sources(ctx, chunk), warm.embeddings.get(chunk_prompts),
                warm.embeddings.get([cfg.negative_prompt] * len(chunk)), [r.strength for r in chunk],
                [make_generator(r.seed) for r in chunk], num_inference_steps=settings["num_inference_steps"],
                guidance_scale=settings["guidance_scale"], size=settings["image_size"],
                guidance=self.guidance(scorer, prototypes, chunk))
            for r, prompt, image, extra in zip(chunk, chunk_prompts, images, info, strict=True):
                extra = {**extra, "energy_at_guidance": round(float(extra["energy_at_guidance"]), 6)}
                out.append(SyntheticSample(image, one_hot(r.target_class, ctx.num_classes),
                                           self.sample_provenance(r, prompt=prompt, sampler=settings, **extra)))
        return out

    def guidance(self, scorer: Any, prototypes: Any, requests: Sequence[GenerationRequest]):
        """The ``PrototypeGuidance`` of a batch of ``requests``: the energy of each row against its target class's
        prototypes, and (``transform_init = random``) one init generator per request, derived from its seed."""
        from augbench.diffusion.prototype_guidance import (
            PrototypeGuidance,
            clip_features,
            hierarchical_energy,
        )

        cfg = self.config
        classes = [r.target_class for r in requests]

        def energy(images, rows):
            feats = clip_features(scorer, images, unit=cfg.normalize_features)
            pc, pg, mask = prototypes.targets([classes[i] for i in rows], feats.device)
            return hierarchical_energy(feats, pc, pg, mask, class_weight=cfg.class_weight,
                                       group_weight=cfg.group_weight, normalize=cfg.normalize_features)

        gens = [make_generator(derive_seed(r.seed, "distdiff-transform")) for r in requests]
        return PrototypeGuidance(energy=energy, kind=cfg.guidance, rho=cfg.rho, remaining=cfg.guidance_remaining,
                                 steps=cfg.guidance_steps, updates=cfg.updates, radius=cfg.radius,
                                 init=cfg.transform_init, init_generators=gens)

    def _prototypes(self, ctx: MethodContext):
        from augbench.diffusion.prototype_guidance import PROTOTYPE_KIND, load_prototypes

        if PROTOTYPE_KIND not in ctx.artifacts:
            raise ConfigError(f"{self.id} needs the {PROTOTYPE_KIND!r} artifact (declared by artifacts()); build it "
                              "as the runner does (augbench.run.artifacts.build_artifacts) before generate")
        artifact = ctx.artifacts[PROTOTYPE_KIND]
        cache = self.__dict__.setdefault("_loaded", {})
        if artifact.key not in cache or cache[artifact.key][0] != str(artifact.folder):
            cache[artifact.key] = (str(artifact.folder), load_prototypes(artifact))
        return cache[artifact.key][1]
