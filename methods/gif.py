"""GIF-SD: img2img of every real image, then a CLIP-guided channel-wise perturbation of the result's latent
(Zhang et al., "Expanding Small-Scale Datasets with Guided Imagination", NeurIPS 2023; GIF's Stable Diffusion
variant).

Sources. [GIF] = ``Vanint/DatasetExpansion`` at commit ``554e608`` (2024-01-15);
``CARS`` = its ``GIF_SD/Cars/dataset_expansion_stable_diffusion_CLIP_batch_optimization.py`` (the Caltech,
Pets, DTD, Flowers and CIFAR ``..._final.py`` scripts differ from it only in their dataset readers),
``WO`` = the same folder's ``..._wo_optimization.py``, ``README`` = the repository's README. The paper's
abstract (arXiv 2211.13976) names the two criteria, "class-maintained information boosting" and "sample
diversity promotion", and says GIF optimises "the latent features of the seed data"; its method section was
in none of this session's stored corpora, so the algorithm and every number below are the code's, and
paper-only statements are not relied on (UNSPEC where the code is silent).

What one expansion does [CARS:495-626]:

1. Seed image x (label y) -> resized to 512 x 512 (bicubic), ``RandomRotation(15)`` (nearest, black fill)
   and ``RandomHorizontalFlip`` -> img2img with SD v1.4 (LDM ``DDIMSampler``, 50 steps, eta 0; strength s:
   ``t_enc = int(s * 50)`` steps; CFG scale ``--scale`` with the empty prompt) [CARS:301-307, 524-549].
   Prompts: ``"{domain} {adjective} {class}"``, domain from 5 and adjective from 10 strings (one is ``""``),
   drawn per edit [CARS:517-522]. The wo_optimization script (the "unguided SD" baseline) prompts
   ``"an image of {class}"`` and decodes the img2img latent as it is (no steps 2-4) [WO:532-533, 559].
   LDM's ``stochastic_encode`` noises to DDIM grid index ``t_enc`` (t = 901 at s 0.9) but ``decode`` starts one
   grid point lower (881) [GIF meta/ldm/models/diffusion/ddim.py:207-237]; diffusers' img2img (METHODS_SPEC
   §1.3), used here, noises to the first step it runs (881).
2. Zero-shot CLIP ViT-B/32 on the unaugmented seed, texts ``"This is a photo of a {class}"``, logits
   ``100 cos``: probabilities s, predicted class j = argmax s, entropy H(s) [CARS:431-437, 531-536].
3. The img2img output latent z (before VAE decoding) is perturbed per channel:
   ``z' = z (1 + alpha) + beta``, alpha ~ U[0, 1) and beta ~ N(0, 1) of shape [B, C, 1, 1] [CARS:551-557];
   z' is decoded, clamped to [0, 1], resized to 224 and scored by the same CLIP (s') [CARS:559-565]:
   ``S = mean_b(H(s'_b) - H(s)) + mean_b s'_b[j] + KL(q_mean || q_b)`` (batch mean), where q_b is the softmax
   over the 512 dimensions of the unit-norm CLIP image feature of edit b and q_mean the softmax of the mean
   feature of the group [CARS:567-577]; the first two terms are the class-maintained informativeness, the
   third the diversity; all weights are 1.
4. One sign-gradient ascent step on (alpha, beta): ``+ 0.1 sign(dS/d.)`` [CARS:580-583]; then
   ``z'' = z (1 + alpha) + beta`` is projected onto the L-inf ball of radius epsilon (``--constraint_value``)
   around z and decoded; the image is saved at the model resolution [CARS:369-382, 586-598]. The gradient is
   taken on the *unprojected* z' (the projection is applied once, at the end).
5. Group: the edits of one seed are made ``--expanded_batch_size`` (2) at a time, so with 5 per image the
   groups are 2, 2, 1, and the diversity term compares the edits of one group [CARS:474-484].
6. Labels: the expanded folder is named after the seed's class (hard label) [CARS:594-598]; training
   concatenates the real and expanded sets [GIF Cars/car_expanded_data_concat_original.py:131-136].

Per-dataset values (README commands; natural-image datasets, SD v1.4, 5 edits per image, group 2):
CIFAR-100 and Cars: scale 50, strength 0.9, epsilon 0.8; Caltech-101: scale 5, strength 0.9, epsilon 4;
DTD: scale 50, strength 0.5, epsilon 0.8; Flowers: scale 8, strength 0.5, epsilon 0.8; Pets: scale 50,
strength 0.7, epsilon 0.8, 10 edits per image [README L86, L167, L229, L291, L353, L414]. Argparse defaults
differ (scale 50, strength 0.5, epsilon 0.1 [CARS:72-75, 155-167]); the README's are the ones run.

Code quirks (BUG / DISAGREE) and what the harness does instead:

* The seed goes to CLIP normalised with CIFAR's mean/std and the edits with no normalisation at all
  [CARS:309-313, 561-562]; here both go through the CLIP's own preprocessing (``CLIPScorer.preprocess``).
* ``probs * log(probs)`` can give NaN for a zero probability [CARS:536, 565]; here the entropy uses log-softmax.
* Randomness comes from the global ``random``/torch state (a random ``--manualSeed``), WO even reseeds 888 per
  batch [WO:528]; here every draw comes from the request seed (prompt words, rotation/flip, alpha/beta).

HARNESS default (what a researcher comparing methods expects: GIF-SD as its README runs it on Cars, a
fine-grained dataset like the suites'): the Cars recipe above on the profile's pipeline (sd15: SD v1.5,
embedded: the world's; ``base_model = "sd14"`` for the code's SD v1.4) with diffusers' DDIM (50 steps,
eta 0: the LDM sampler's "uniform" grid is DDIM's "leading" spacing with offset 1), the profile's CLIP
(sd15: ViT-B/32 as the code; embedded: the world's) with its own logit scale (100 for ViT-B/32), and two
harness conventions: the meta word in the generation and zero-shot prompts (METHODS_SPEC §1.6,
``a photo of a {name} {meta}`` as Real-Filter's zero-shot, §3.4) and edits resized back to the source size
(as Real-Guidance, §3.5). Presets: ``code`` (the code's prompts, SD v1.4, model-size output), the other
datasets' recipes (``caltech``, ``dtd``, ``flowers``, ``pets``), ``unguided`` (WO: plain img2img with
"an image of"), ``random_perturbation`` (alpha/beta drawn and projected, no CLIP step: HARNESS ablation)
and ``rg_sampler`` (GIF on Real-Guidance's sampler, DPM-Solver++ 25, w 7.5, s 0.5: a comparison with
``real_guidance`` at its sampling cost, 12 UNet passes per edit instead of 45).

Determinism: a group's edits are optimised together, so ``plan`` stores each request's group members
(index, seed) and ``generate`` regenerates a member a chunk lacks (its output is kept for the next call, so a
chunk boundary costs no second img2img). Training integration (METHODS_SPEC §4): per-class, so same-class
replacement with hard labels (a suite can select GIF's own ``concat``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from augbench.contract import (
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
from augbench.diffusion.sampling import (
    check_strengths,
    load_sources,
    plan_edits,
    sampler_settings,
    sd14_pipeline,
)
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["ADJECTIVES", "DOMAINS", "GIF", "GIFConfig", "augment_source", "img2img_latents", "project_linf"]

DOMAINS = ("an image of", "a real-world photo of", "a cartoon image of", "an oil painting of", "a sketch of")
ADJECTIVES = ("", "colorful", "stylized", "high-contrast", "low-contrast", "posterized", "solarized", "sheared",
              "bright", "dark")
CARS = "[GIF Cars/dataset_expansion_stable_diffusion_CLIP_batch_optimization.py"


@dataclass(frozen=True)
class GIFConfig(MethodConfig):
    prompt_template: str = param("{domain} {adjective} {name} {meta}", "generation prompt; {domain}, {adjective} "
                                 "drawn per edit, {name} class name, {meta} meta word",
                                 paper=f"code: '{{domain}} {{adjective}} {{class}}' {CARS}:517-521]")
    prompt_domains: tuple[str, ...] = param(DOMAINS, "the {domain} strings", paper=f"{CARS}:517]")
    prompt_adjectives: tuple[str, ...] = param(ADJECTIVES, "the {adjective} strings", paper=f"{CARS}:518]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper=f'"" {CARS}:546]')
    zero_shot_template: str = param("a photo of a {name} {meta}", "CLIP zero-shot text per class",
                                    paper=f"code: 'This is a photo of a {{class}}' {CARS}:433]")
    edits_per_image: int = param(5, "edits of every real image", paper="README: 5 (Pets 10)")
    group_size: int = param(2, "edits of one image optimised together (the diversity term's set)",
                            paper=f"README --expanded_batch_size 2: groups 2, 2, 1 {CARS}:474-481]")
    strength: float = param(0.9, "img2img strength (METHODS_SPEC §1.3)",
                            paper="README: 0.9 CIFAR/Caltech/Cars, 0.7 Pets, 0.5 DTD/Flowers; argparse 0.5")
    num_inference_steps: int | None = param(50, "sampler steps (None: the profile's)",
                                            paper=f"--ddim_steps 50 {CARS}:107-112]")
    guidance_scale: float | None = param(50.0, "CFG scale (None: the profile's)",
                                         paper="README --scale: 50 (Caltech 5, Flowers 8)")
    scheduler: str = param("ddim", "diffusers scheduler", paper=f"LDM DDIMSampler, eta 0 {CARS}:125-130, 457]",
                           choices=("ddim", "dpmsolver++", "pndm"))
    image_size: int | None = param(None, "model resolution (None: the profile's)", paper="512")
    base_model: str | None = param(None, "None: the profile's model; sd14: the profile's SD v1.4",
                                   paper="code: SD v1.4 (README)", choices=(None, "sd14"))
    source_augment: str = param("rotate_flip", "seed augmentation before img2img: rotation in [-15, 15] deg "
                                "(nearest, black fill) then a horizontal flip with p 0.5, or none",
                                paper=f"RandomRotation(15) + RandomHorizontalFlip {CARS}:301-307]",
                                choices=("rotate_flip", "none"))
    epsilon: float = param(0.8, "L-inf radius of the latent perturbation around the img2img latent",
                           paper="README --constraint_value 0.8 (Caltech 4); argparse 0.1")
    optimisation_steps: int = param(1, "sign-gradient steps on (alpha, beta); 0: random perturbation only",
                                    paper=f"one step {CARS}:580-583]")
    step_size: float = param(0.1, "step of alpha and beta per sign-gradient step", paper=f"0.1 {CARS}:582-583]")
    class_weight: float = param(1.0, "weight of s'[j] (class maintained)", paper=f"1 {CARS}:577]")
    entropy_weight: float = param(1.0, "weight of H(s') - H(s) (information boosting)", paper=f"1 {CARS}:577]")
    diversity_weight: float = param(1.0, "weight of KL(q_mean || q_b) (diversity)", paper=f"1 {CARS}:577]")
    consistency_class: str = param("clip_prediction", "j: CLIP's prediction on the seed, or the seed's label",
                                   paper=f"argmax of CLIP on the seed {CARS}:535, 569-570]",
                                   choices=("clip_prediction", "source_label"))
    logit_scale: float | None = param(None, "CLIP logit scale (None: the model's, 100 for ViT-B/32)",
                                      paper=f"100 {CARS}:533, 564]")
    output_size: str = param("source", "edits resized back to the source size, or kept at the model resolution",
                             paper=f"code: model resolution {CARS}:594-598]", choices=("source", "model"))
    track_objective: bool = param(False, "also score the final iterate (one more decode + CLIP pass per group)")

    def validate(self) -> None:
        super().validate()
        check_strengths(self.strength, ())
        for name in ("edits_per_image", "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gif {name} must be >= 1, got {getattr(self, name)}")
        if self.epsilon < 0 or self.step_size <= 0 or self.optimisation_steps < 0:
            raise ConfigError(f"gif needs epsilon >= 0, step_size > 0 and optimisation_steps >= 0; got "
                              f"{self.epsilon}, {self.step_size}, {self.optimisation_steps}")
        if not self.prompt_domains or not self.prompt_adjectives:
            raise ConfigError("gif prompt_domains and prompt_adjectives need one string each at least "
                              "(the unguided preset uses ('an image of',) and ('',))")

    @property
    def uses_clip(self) -> bool:
        return self.optimisation_steps > 0


class GIF(OfflineMethod):
    """GIF-SD: img2img of every real image, its latent perturbed within an L-inf ball by CLIP-guided channel noise."""

    family: ClassVar[str] = "gif"
    Config: ClassVar[type[MethodConfig]] = GIFConfig
    presets: ClassVar[dict] = {
        "code": {"prompt_template": "{domain} {adjective} {name}", "zero_shot_template": "This is a photo of a {name}",
                 "base_model": "sd14", "output_size": "model"},
        "caltech": {"guidance_scale": 5.0, "epsilon": 4.0},
        "dtd": {"strength": 0.5},
        "flowers": {"guidance_scale": 8.0, "strength": 0.5},
        "pets": {"strength": 0.7, "edits_per_image": 10},
        "unguided": {"optimisation_steps": 0, "epsilon": 0.0, "prompt_domains": ("an image of",),
                     "prompt_adjectives": ("",)},
        "random_perturbation": {"optimisation_steps": 0},
        "rg_sampler": {"scheduler": "dpmsolver++", "num_inference_steps": 25, "guidance_scale": 7.5, "strength": 0.5},
    }
    # the tiny test profile: 4 DDIM steps instead of 50 (45 UNet passes per edit at s = 0.9)
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 4}
    card: ClassVar[MethodCard] = MethodCard(
        summary="GIF-SD: img2img of each real image, its latent perturbed by CLIP-guided channel noise (L-inf ball)",
        changes="adds M edits of every real image, same class, pushed to be more informative and diverse under CLIP",
        labels="hard: the source image's class",
        cost=("per edit floor(N*s) UNet passes at batch 2 (45 at the default DDIM 50, s 0.9); per group of 2 and "
              "optimisation step one VAE decode and one CLIP image pass with their backward; one output decode"),
        references=("Zhang et al. NeurIPS 2023 (arXiv 2211.13976)", "Vanint/DatasetExpansion GIF_SD @554e608",
                    "METHODS_SPEC §1.3", "METHODS_SPEC §4", "METHODS_SPEC §3.4"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._kept: dict[int, tuple[str, SyntheticSample]] = {}  # companions of the last call, by request index

    # -- models ------------------------------------------------------------------------------------

    def base_pipeline(self, ctx: MethodContext) -> str | None:
        """The pipeline edits are made with (``None``: the profile's)."""
        if self.config.base_model is None:
            return None
        return sd14_pipeline(ctx.profile, "gif")

    def required_models(self, profile) -> dict[str, str]:
        """The pipeline (the profile's or its SD v1.4) and, when a guidance step runs, the profile's CLIP."""
        if self.config.base_model is None:
            models = super().required_models(profile)
        else:
            models = {"sd14_pipeline": str(profile.extra.get("sd14_pipeline") or "")}
        return {**models, "clip": profile.clip} if self.config.uses_clip else models

    # -- planning ----------------------------------------------------------------------------------

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        """``edits_per_image`` requests per real image (DAF-style ``each``), grouped ``group_size`` at a time.

        Each request's random choices (prompt words, rotation, flip) come from its own seed; its params list
        the (index, seed) of every member of its group, so ``generate`` can rebuild a member a chunk lacks.
        """
        cfg = self.config
        base = plan_edits(lambda i: self.request_seed(seed, i), subset, budget, edits_per_image=cfg.edits_per_image,
                          source="each", strength=cfg.strength)
        groups: dict[tuple[int, int], list[list[int]]] = {}
        for r in base:
            groups.setdefault(self._group(r.index), []).append([r.index, r.seed])
        card = ctx.card if ctx is not None else None
        return [self._finish(r, groups[self._group(r.index)], card) for r in base]

    def _group(self, index: int) -> tuple[int, int]:
        """(slot of the source image in the plan, group within its edits)."""
        m = self.config.edits_per_image
        return index // m, (index % m) // self.config.group_size

    def _finish(self, r: GenerationRequest, members: list[list[int]], card) -> GenerationRequest:
        cfg = self.config
        rng = np.random.default_rng(derive_seed(r.seed, "gif-choices"))
        params = {**r.params, "group": list(self._group(r.index)), "members": members,
                  "domain": cfg.prompt_domains[int(rng.integers(len(cfg.prompt_domains)))],
                  "adjective": cfg.prompt_adjectives[int(rng.integers(len(cfg.prompt_adjectives)))]}
        if cfg.source_augment == "rotate_flip":
            params.update(rotation=round(float(rng.uniform(-15.0, 15.0)), 4), flip=bool(rng.random() < 0.5))
        request = dataclasses.replace(r, params=params)
        return dataclasses.replace(request, prompt=self._prompt(request, card)) if card is not None else request

    def _prompt(self, r: GenerationRequest, card) -> str:
        template = self.config.prompt_template.replace("{domain}", r.params["domain"])
        return card.prompt(r.target_class, template.replace("{adjective}", r.params["adjective"]))

    def _member(self, r: GenerationRequest, index: int, seed: int, card) -> GenerationRequest:
        """Group member ``index`` of ``r``'s group, exactly as ``plan`` made it."""
        base = GenerationRequest(index=index, seed=seed, target_class=r.target_class, source_ids=r.source_ids,
                                 source_classes=r.source_classes, strength=r.strength,
                                 params={"edit": index % self.config.edits_per_image})
        return self._finish(base, r.params["members"], card)

    # -- generation --------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Whole groups at a time (``ctx.batch_size`` edits per img2img call, at least one group)."""
        from augbench.diffusion import pipelines as diffusion

        if not requests:
            return []
        cfg, card = self.config, ctx.require_card()
        settings = sampler_settings(cfg, ctx)
        run_ctx = self._model_context(ctx)
        warm = diffusion.load_warm_pipeline(run_ctx)
        pipe = diffusion.pipeline_view(warm, settings["scheduler"])
        # what a kept companion was made for: config, sampler, model, device, dataset and image source
        key = json.dumps([cfg.to_dict(), settings, run_ctx.profile.pipeline, str(ctx.device), card.id,
                          id(ctx.source)], sort_keys=True)
        requests = [r if r.prompt else dataclasses.replace(r, prompt=self._prompt(r, card)) for r in requests]
        wanted = {r.index: r for r in requests}
        done = {i: s for i, (k, s) in self._kept.items() if i in wanted and k == _request_key(wanted[i], key)}
        todo: dict[int, GenerationRequest] = {}
        for r in requests:
            if r.index in done:
                continue
            todo[r.index] = r
            for index, seed in r.params["members"]:
                if index not in todo and index not in wanted:
                    todo[index] = self._member(r, index, seed, card)
        zero_shot = _ZeroShot(ctx, card, cfg) if cfg.uses_clip and todo else None
        kept: dict[int, tuple[str, SyntheticSample]] = {}
        for batch in self._batches(sorted(todo.values(), key=lambda r: r.index), ctx.batch_size):
            for r, sample in zip(batch, self._generate_batch(batch, ctx, warm, pipe, zero_shot, settings), strict=True):
                if r.index in wanted:
                    done[r.index] = sample
                else:
                    kept[r.index] = (_request_key(r, key), sample)
        self._kept = kept
        return [done[r.index] for r in requests]

    def _model_context(self, ctx: MethodContext) -> MethodContext:
        path = self.base_pipeline(ctx)
        if path is None or path == ctx.profile.pipeline:
            return ctx
        return dataclasses.replace(ctx, profile=dataclasses.replace(ctx.profile, pipeline=path,
                                                                    models_fingerprint=None))

    def _batches(self, requests: list[GenerationRequest], size: int) -> list[list[GenerationRequest]]:
        groups: dict[tuple, list[GenerationRequest]] = {}
        for r in requests:
            groups.setdefault(tuple(r.params["group"]), []).append(r)
        if not groups:
            return []
        batches: list[list[GenerationRequest]] = [[]]
        for members in groups.values():
            if batches[-1] and len(batches[-1]) + len(members) > size:
                batches.append([])
            batches[-1].extend(members)
        return batches

    def _generate_batch(self, batch: list[GenerationRequest], ctx: MethodContext, warm, pipe,
                        zero_shot: _ZeroShot | None, settings: dict) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion

        cfg, card = self.config, ctx.require_card()
        prompts = [r.prompt or self._prompt(r, card) for r in batch]
        warm.embeddings.get(list(dict.fromkeys([*prompts, cfg.negative_prompt])))
        sources = load_sources(ctx, batch)
        latents = img2img_latents(
            pipe, [augment_source(s, r) for s, r in zip(sources, batch, strict=True)], warm.embeddings.get(prompts),
            warm.embeddings.get([cfg.negative_prompt] * len(batch)), [r.strength for r in batch],
            [make_generator(r.seed) for r in batch], num_inference_steps=settings["num_inference_steps"],
            guidance_scale=settings["guidance_scale"], size=settings["image_size"])
        with torch.inference_mode(False):
            latents = latents.clone()  # a normal tensor: autograd may save it
        out = torch.empty(latents.shape, dtype=torch.float32, device=latents.device)
        infos: list[dict] = [{}] * len(batch)
        rows_of: dict[tuple, list[int]] = {}
        for i, r in enumerate(batch):
            rows_of.setdefault(tuple(r.params["group"]), []).append(i)
        for rows in rows_of.values():
            out[rows], info = self.perturb_group(latents[rows], [batch[i] for i in rows], sources[rows[0]],
                                                 zero_shot, pipe.vae)
            for i in rows:
                infos[i] = info
        sizes = [s.shape[:2] for s in sources] if cfg.output_size == "source" else None
        images = diffusion.decode_latents(pipe, out, sizes)
        return [SyntheticSample(image, one_hot(r.target_class, ctx.num_classes),
                                self.sample_provenance(r, prompt=p, sampler=settings, gif=dict(info)))
                for r, p, image, info in zip(batch, prompts, images, infos, strict=True)]

    # -- the guided perturbation ---------------------------------------------------------------------

    def perturb_group(self, z: torch.Tensor, members: list[GenerationRequest], source: np.ndarray,
                      zero_shot: _ZeroShot | None, vae) -> tuple[torch.Tensor, dict]:
        """One group's perturbed latents ``[m, C, h, w]`` (float32, within ``epsilon`` of ``z``) and a record.

        alpha ~ U[0, 1) and beta ~ N(0, 1) per channel from each member's seed; ``optimisation_steps``
        sign-gradient ascent steps of ``step_size`` on the guidance score of the unprojected
        ``z (1 + alpha) + beta``; then the L-inf projection (steps 3-4 of the module docstring).
        """
        cfg = self.config
        gens = [make_generator(derive_seed(r.seed, "gif-perturbation")) for r in members]
        shape = (z.shape[1], 1, 1)
        with torch.inference_mode(False):
            zf = z.float()
            alpha = torch.stack([torch.rand(shape, generator=g) for g in gens]).to(z.device)
            beta = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(z.device)
            scores, terms, target = [], {}, None
            if cfg.uses_clip:
                target, source_entropy = zero_shot.seed_prediction(source, members[0].target_class)
                for _ in range(cfg.optimisation_steps):
                    a, b = alpha.clone().requires_grad_(True), beta.clone().requires_grad_(True)
                    with torch.enable_grad():
                        total, terms = zero_shot.objective(zf * (1 + a) + b, vae, target, source_entropy)
                        grad_a, grad_b = torch.autograd.grad(total, [a, b])
                    scores.append(float(total.detach()))
                    alpha, beta = alpha + cfg.step_size * grad_a.sign(), beta + cfg.step_size * grad_b.sign()
                if cfg.track_objective:
                    with torch.no_grad():
                        total, terms = zero_shot.objective(zf * (1 + alpha) + beta, vae, target, source_entropy)
                    scores.append(float(total))
            out = project_linf(zf * (1 + alpha) + beta, zf, cfg.epsilon)
        info = {"group": members[0].params["group"], "clip_class": target, "scores": [round(s, 6) for s in scores],
                "terms": {k: round(v, 6) for k, v in terms.items()},
                "latent_linf": round(float((out - zf).abs().max()), 6)}
        return out, info


class _ZeroShot:
    """The profile's CLIP as GIF's zero-shot classifier over the card's classes, differentiable in the image."""

    def __init__(self, ctx: MethodContext, card, cfg: GIFConfig):
        from augbench.metrics.clip import profile_clip_scorer

        self.cfg = cfg
        self.scorer = profile_clip_scorer(ctx.profile, ctx.device)
        texts = [card.prompt(c, cfg.zero_shot_template) for c in range(card.num_classes)]
        with torch.inference_mode(False):
            self.text = self.scorer.text_features(texts).clone().to(self.scorer.device)
        scale = cfg.logit_scale if cfg.logit_scale is not None else self.scorer.model.logit_scale.exp().item()
        self.scale = float(scale)

    def features(self, images01: torch.Tensor) -> torch.Tensor:
        """Unit-norm CLIP image features of ``[N, 3, H, W]`` images in [0, 1] (gradients flow)."""
        pixels = self.scorer.preprocess(images01.float().cpu()).to(self.scorer.device)
        out = self.scorer.model.get_image_features(pixel_values=pixels)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return F.normalize(out.float(), dim=-1)

    def seed_prediction(self, source: np.ndarray, label: int) -> tuple[int, float]:
        """(j, H(s)): the class kept (CLIP's argmax on the seed, or its label) and the seed's entropy."""
        with torch.no_grad():
            x = torch.from_numpy(np.array(source, dtype=np.uint8)).permute(2, 0, 1)[None]
            logp = torch.log_softmax(self.scale * self.features(x.float() / 255.0) @ self.text.T, dim=1)[0]
        j = int(logp.argmax()) if self.cfg.consistency_class == "clip_prediction" else int(label)
        return j, float(-(logp.exp() * logp).sum())

    def objective(self, latents: torch.Tensor, vae, target: int, source_entropy: float) -> tuple[torch.Tensor, dict]:
        """GIF's score of one group's latents (to maximise) and its three terms (module docstring, step 3)."""
        cfg = self.cfg
        x = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        feats = self.features((x.float() / 2 + 0.5).clamp(0, 1))
        logp = torch.log_softmax(self.scale * feats @ self.text.T, dim=1)
        entropy_gain = (-(logp.exp() * logp).sum(1) - source_entropy).mean()
        class_probability = logp[:, target].exp().mean()
        q, q_mean = torch.log_softmax(feats, dim=1), torch.log_softmax(feats.mean(0, keepdim=True), dim=1)
        diversity = (q_mean.exp() * (q_mean - q)).sum(1).mean()  # KLDivLoss(q, q_mean, log_target, batchmean)
        total = cfg.class_weight * class_probability + cfg.entropy_weight * entropy_gain + \
            cfg.diversity_weight * diversity
        terms = {"class_probability": float(class_probability.detach()), "entropy_gain": float(entropy_gain.detach()),
                 "diversity": float(diversity.detach())}
        return total, terms


def _request_key(r: GenerationRequest, settings_key: str) -> str:
    return json.dumps([r.to_dict(), settings_key], sort_keys=True)


def project_linf(latents: torch.Tensor, centre: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``latents`` clamped into the L-inf ball of radius ``epsilon`` around ``centre`` [CARS:369-382]."""
    return torch.minimum(torch.maximum(latents, centre - epsilon), centre + epsilon)


def augment_source(image: np.ndarray, request: GenerationRequest) -> np.ndarray:
    """The seed as GIF edits it: rotated by the request's angle (nearest, black fill) then flipped when drawn.

    The code rotates after its 512 bicubic resize [CARS:301-307]; here at the source size, before the
    pipeline's bilinear stretch (the angle and flip are the request's, so it is reproducible).
    """
    from PIL import Image

    angle, flip = request.params.get("rotation"), request.params.get("flip", False)
    if angle is None and not flip:
        return image
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if angle is not None:
        img = img.rotate(float(angle), resample=Image.NEAREST, expand=False, fillcolor=(0, 0, 0))
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img)


@torch.inference_mode()
def img2img_latents(pipe, images: Sequence[np.ndarray], prompt_embeds: torch.Tensor, negative_prompt_embeds: torch.Tensor,
                    strengths: Sequence[float], generators: Sequence[torch.Generator], *, num_inference_steps: int,
                    guidance_scale: float, size: int) -> torch.Tensor:
    """The final latents of ``augbench.diffusion.pipelines.image_to_image`` (before decoding), ``[N, C, h, w]``.

    The same steps in the same order (bilinear stretch, VAE posterior sample then forward noise from each
    request's generator, ``denoise`` over the schedule's tail); ``tests/test_gif.py`` checks that decoding
    them gives ``image_to_image``'s images.
    """
    from diffusers.utils.torch_utils import randn_tensor
    from PIL import Image

    from augbench.diffusion.pipelines import denoise, strength_steps

    vae = pipe.vae
    stretched = [np.asarray(Image.fromarray(np.asarray(im, dtype=np.uint8)).convert("RGB").resize(
        (size, size), Image.BILINEAR), dtype=np.float32) for im in images]
    pixels = (2.0 * torch.from_numpy(np.stack(stretched)).permute(0, 3, 1, 2) / 255.0 - 1.0).to(vae.device, vae.dtype)
    dist = vae.encode(pixels).latent_dist
    noise = randn_tensor(dist.mean.shape, generator=list(generators), device=dist.mean.device, dtype=dist.mean.dtype)
    z0 = (dist.mean + dist.std * noise) * vae.config.scaling_factor
    steps = [strength_steps(num_inference_steps, s) for s in strengths]
    out = torch.empty_like(z0)
    for k in dict.fromkeys(steps):
        rows = [i for i in range(len(images)) if steps[i] == k]
        sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
        sched.set_timesteps(num_inference_steps, device=pipe.unet.device)
        begin = (num_inference_steps - k) * sched.order
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        ts = sched.timesteps
        x0 = z0[rows]
        noise = randn_tensor(x0.shape, generator=[generators[i] for i in rows], device=x0.device, dtype=x0.dtype)
        xt = sched.add_noise(x0, noise, ts[begin:begin + 1].repeat(len(rows)))
        out[rows] = denoise(pipe, xt, prompt_embeds[rows], negative_prompt_embeds[rows], timesteps=ts[begin:].tolist(),
                            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
    return out
