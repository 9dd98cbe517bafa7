"""Diff-II: inversion circle interpolation + two-stage denoising (METHODS_SPEC §3.10; P2).

Pipeline per class ``c`` with ``N_c`` training images [P2 §3 L69-85]:

0. Concept learning: the ``lora_ti`` artifact (Diff-Mix's LoRA + one token ``<class_i>`` per class,
   §1.4, §3.10.0), shared with Diff-Gen / Diff-AUG / Diff-Mix / NoiseCutMix.
1. Inversion pool: the ``ddim_inversion`` artifact (``augbench.diffusion.inversion``, §3.10.1): every training
   image DDIM-inverted to ``x_T`` with the concepts loaded and prompt ``a photo of a <class_i> [meta]``.
2. Random circle interpolation (§3.10.2): per synthetic image one unordered pair ``(I_a, I_b)`` of
   distinct inversions of the class, drawn uniformly with replacement (first in pool order = ``I_a``);
   ``theta = arccos(<I_a, I_b> / (|I_a| |I_b|))`` over the flattened latents, ``lam ~ U(0, 2 pi / theta)``
   and ``Z = [sin((1 + lam) theta) I_a - sin(lam theta) I_b] / sin theta`` (P2 Eq.5): a point of the
   great circle through both (``lam = 0``: ``I_a``; ``lam = 2 pi / theta - 1``: ``I_b``; the share of
   draws on the short arc between them is ``theta / 2 pi``).
3. Two-stage denoising (§3.10.3): DDIM, 25 steps, eta = 0, CFG w = 7.5 with ``""``, from ``Z``; the
   prompt is ``plain + " " + suffix`` (suffix drawn uniformly per image from the ``suffixes`` artifact,
   ``augbench.diffusion.suffixes``) while ``t >= 1000 (1 - s)`` and the plain prompt after. This is the DII
   code's rule; P2's text says the opposite ("the first stage includes time steps from T to sT"),
   which would make the suffixed share ``1 - s``; the code's reading is the one consistent with P2
   Fig.7 and "s = 1.0 for all long-tail settings", and is adopted (§3.10.3 DISAGREE). With 25 steps of
   the SD v1.5 DDIM schedule ("leading", steps_offset 1: 961, 921, ..., 1): s = 0.1 -> 2 suffixed steps,
   0.3 -> 7, 1.0 -> 25. The embedded world's scheduler config says "linspace" (999, 957, ..., 0, which
   would give 3 / 8 / 25); the DDIM sampler here always uses "leading" spacing (as ``ddim_invert`` does)
   so both profiles follow SD v1.5's schedule and the stage counts above.
4. Output: ``floor(expansion * N_c)`` images per class (expansion 5), hard label of the class, PNG
   (preset ``jpeg_q75``: each image round-tripped through JPEG quality 75, as DII saves them).

Split ratio ``s`` (``split_ratio``): ``auto`` is resolved from the training subset's protocol and shots
(its manifest, part of every key): few-shot 5-shot -> 0.3, 10-shot -> 0.1 (P2 L178), long-tail -> 1.0
(P2 L186); the resolved value is in every request's params and every sample's provenance. The
Waterbirds OOD protocol trains on a 5-shot CUB subset, so ``auto`` gives 0.3 there, P2's "same as
Sec. 4.1" [L233]; the DII scripts use 1.0 (``ours_1.0``), which the suite sets explicitly.

Classes with a single image (§3.10.5; long-tail tails) cannot interpolate: they start from
``Z ~ N(0, I)`` and are denoised the same way; their samples carry ``single_image_class: true``.
Degenerate pairs (``sin theta < 1e-6``: identical or opposite inversions, where Eq.5 divides by ~0)
fall back to ``I_a`` (HARNESS choice of §3.10.2; flagged ``fallback`` in the provenance).

Ablation presets (P2 Tab.4, §9.5; paired: every preset draws pair, lam, suffix and noise from the
request seed in the same order, and presets of one family share request seeds):

=================  ==  ==  ==  ==  ==  =============================================================
preset             CL  LI  SI  SE  TD  configuration
=================  ==  ==  ==  ==  ==  =============================================================
``vanilla_t2i``                        vanilla model, Gaussian noise, ``a photo of a {name} {meta}``
``cl_only``        x                   concepts, Gaussian noise, plain prompt
``cl_li``          x   x               linear interpolation, lam ~ U[0, 1]
``cl_li_td``       x   x           x   linear interpolation + two-stage denoising
``cl_si``          x       x           spherical interpolation (P2 Eq.6), lam ~ U[0, 1]
``cl_si_se``       x       x   x       circle (SI + SE) without two-stage denoising
``cl_td``          x               x   Gaussian noise + two-stage denoising
(default)          x       x   x   x   the full method
=================  ==  ==  ==  ==  ==  =============================================================

"Without TD" (``two_stage = False``) is the plain prompt for all steps: P2 does not say what the
ablation's single stage used (UNSPEC); the plain prompt makes the row differ from the full method
only by the suffix stage. ``interpolation = "se"`` alone (P2 Eq.7, the long arc, lam ~ U(0, 2 pi / theta
- 1)) is available but has no Tab.4 row of its own.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

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
from augbench.diffusion.inversion import (  # the interpolation math (§3.10.2) lives with the pool it samples
    check_pool_size,
    circle_point,
    interpolate,
    lam_range,
    lerp,
    slerp,
    theta_between,
)
from augbench.diffusion.suffixes import suffix_path
from augbench.plugins import did_you_mean
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    import torch

    from augbench.data.core import Subset

__all__ = ["INTERPOLATIONS", "DiffII", "DiffIIConfig", "circle_point", "class_budgets", "interpolate", "lam_range",
           "lerp", "request_draws", "resolve_split_ratio", "slerp", "suffix_path", "suffixed_steps", "theta_between"]

INTERPOLATIONS = ("circle", "li", "si", "se", "none")
OUTPUT_FORMATS = ("png", "jpeg_q75", "jpeg_q95")
CONCEPT_PROMPT = "a photo of a {token} {meta}"  # DII interpolation_le.py:172-202
PLAIN_PROMPT = "a photo of a {name} {meta}"  # vanilla model: P2 Tab.4 row 1 "a photo of a Samoyed pet"

# the config parameters passed to the captioner suffix source (augbench.diffusion.suffixes.suffix_spec)
CAPTIONER_PARAMS = ("captioner", "llm", "llm_model")

# split ratio of `auto` (P2 L178, L186): (protocol, shots) -> s
AUTO_SPLIT_RATIOS = {("few_shot", 5): 0.3, ("few_shot", 10): 0.1, ("long_tail", None): 1.0, ("waterbirds", None): 1.0}


# --- the math (METHODS_SPEC §3.10.3), pure functions; the interpolation (§3.10.2) is in diffusion.inversion ---

def suffixed_steps(timesteps: Sequence[int], split_ratio: float, num_train_timesteps: int = 1000) -> list[bool]:
    """Which steps use the suffixed prompt: ``t >= num_train_timesteps * (1 - s)`` (DII code, §3.10.3).

    ``s = 0`` never uses it (``t <= T - 1``), ``s = 1`` always does.
    """
    if split_ratio <= 0:
        return [False] * len(timesteps)
    bound = num_train_timesteps * (1.0 - float(split_ratio))
    return [int(t) >= bound for t in timesteps]


def resolve_split_ratio(value: float | str, subset: Subset) -> float:
    """``split_ratio`` as a number: itself, or for ``auto`` the paper's value for the subset's protocol.

    Raises:
        ConfigError: ``auto`` for a protocol / shot count P2 gives no value for.
    """
    if value != "auto":
        return float(value)
    protocol = getattr(subset, "protocol", None)
    shots = (getattr(subset, "params", None) or {}).get("shots")
    for key in ((protocol, shots), (protocol, None)):
        if key in AUTO_SPLIT_RATIOS:
            return AUTO_SPLIT_RATIOS[key]
    raise ConfigError(
        f"split_ratio = 'auto' is defined for few-shot 5-shot (0.3), 10-shot (0.1), long-tail and Waterbirds (1.0) "
        f"(P2 L178, L186; METHODS_SPEC §3.10.6); this subset is protocol {protocol!r} with shots {shots!r}: set "
        "split_ratio to a number in [0, 1]")


def class_budgets(counts: Sequence[int], expansion: float, budget: int | None = None) -> list[int]:
    """Images per class: ``floor(expansion * N_c)`` (DII interpolation_le.py:200-206), or ``budget`` split
    proportionally to the class counts when one is given."""
    if budget is None:
        return [int(math.floor(expansion * n + 1e-9)) for n in counts]
    from augbench.diffusion.sampling import allocate

    return allocate(counts, int(budget), "proportional")


@dataclass(frozen=True)
class Draws:
    """The random choices of one synthetic image, all from its request seed, drawn in this order.

    Attributes:
        pair: index into the class's unordered pairs (``None`` with fewer than two images).
        u_lam: uniform in [0, 1): ``lam = u_lam * lam_range``.
        u_suffix: uniform in [0, 1): the suffix is ``suffixes[floor(u_suffix * len)]``.
    """

    pair: int | None
    u_lam: float
    u_suffix: float


def class_pairs(n: int) -> list[tuple[int, int]]:
    """The unordered pairs of ``n`` inversions in pool order, first element ``I_a`` (interpolation_le.py:96-105)."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def request_draws(seed: int, class_size: int) -> Draws:
    """Pair, lam and suffix draws of a request (three uniforms, in this order, whatever the preset)."""
    rng = np.random.default_rng(derive_seed(seed, "diff_ii-draws"))
    u_pair, u_lam, u_suffix = (float(x) for x in rng.random(3))
    n_pairs = class_size * (class_size - 1) // 2
    return Draws(min(int(u_pair * n_pairs), n_pairs - 1) if n_pairs else None, u_lam, u_suffix)


# --- config --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffIIConfig(MethodConfig):
    split_ratio: float | str = param(
        "auto", "share s of the denoising steps (from t = T down) that use the suffixed prompt; auto: 0.3 (5-shot), "
        "0.1 (10-shot), 1.0 (long-tail), from the subset",
        paper="P2: 0.3 / 0.1 few-shot [L178], 1.0 LT [L186]; DII run.sh: 1.0 for CUB/Aircraft [§3.10.6]")
    two_stage: bool = param(True, "two-stage denoising (False: the plain prompt for every step, Tab.4 'without TD')",
                            paper="P2 Tab.4 ablation [§9.5]")
    interpolation: str = param(
        "circle", "initial latent: circle (P2 Eq.5), li (linear), si (Eq.6), se (Eq.7), none (Gaussian noise)",
        paper="circle [§3.10.2]; li/si/se/none: P2 Tab.4 ablation")
    concepts: str = param("lora_ti", "concept artifact; 'none': the vanilla model with class names (P2 Tab.4 row 1)",
                          paper="LoRA + tokens [§3.10.0]", choices=("lora_ti", "none"))
    suffix_source: str = param(
        "auto", "where the suffixes come from: world, file, captioner; auto: file when suffix_file is set, else world "
        "(embedded) / captioner (other profiles)", paper="BLIP captions summarised by GPT-4 [§3.10.4]")
    suffix_file: str | None = param(
        None, "suffix file (one per line) for suffix_source = file; {dataset}, {shots}, {imbalance_factor} and {rho} "
        "are filled in from the subset, e.g. /data/dii/suffix/{dataset}/{shots}shot.txt",
        paper="DII suffix/{dataset}/{shot}.txt, suffix/imb_{dataset}_{rho}/suffix.txt [§3.10.4]")
    max_suffixes: int = param(10, "at most this many suffixes from the world / captioner sources", paper="10 [§3.10.4]")
    captioner: str | None = param(
        None, "suffix_source = captioner: BLIP folder or hub id (None: $AUGBENCH_SUFFIX_CAPTIONER, else "
        "Salesforce/blip-image-captioning-large)", paper="BLIP large [§3.10.4]")
    llm: str | None = param(
        None, "suffix_source = captioner: the summariser, openai (an OpenAI-compatible endpoint, "
        "$AUGBENCH_SUFFIX_LLM_URL) or transformers (a local causal LM in llm_model); None: openai",
        paper="GPT-4 [§3.10.4]")
    llm_model: str | None = param(
        None, "suffix_source = captioner: the summariser's model: openai: its name (None: $AUGBENCH_SUFFIX_LLM_MODEL, "
        "else gpt-4); transformers: the folder of the causal LM", paper="gpt-4 [§3.10.4]")
    expansion: float = param(5.0, "floor(expansion * N_c) images per class", paper="5 [P2 L178; §3.10.3]")
    num_inference_steps: int = param(25, "DDIM steps (eta = 0)", paper="DII code: 25 [§3.10.3]")
    guidance_scale: float = param(7.5, "CFG scale w (unconditional prompt '')", paper="7.5 [§3.10.3]")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§3.10.3]')
    image_size: int | None = param(None, "resolution of the inversion pool and of generation, one value for both "
                                         "(None: the profile's, 512 for sd15)", paper="512")
    inversion_steps: int | None = param(None, "DDIM inversion steps (None: the profile's: sd15 200, embedded 50)",
                                        paper="DII code: 200 [§3.10.1]")
    concept_steps: int | None = param(None, "training steps of the lora_ti artifact (None: the profile's recipe)")
    output_format: str = param("png", "how images are stored: png, or round-tripped through jpeg_q75 / jpeg_q95",
                               paper="DII: JPEG quality 75 [§3.10.3]", choices=OUTPUT_FORMATS)

    def validate(self) -> None:
        super().validate()
        s = self.split_ratio
        if s != "auto" and (isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0):
            raise ConfigError(f"split_ratio must be 'auto' or a number in [0, 1] (the share of denoising steps, from "
                              f"t = T down, that use the suffixed prompt; METHODS_SPEC §3.10.3); got {s!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}{did_you_mean(self.interpolation, INTERPOLATIONS)}"
                              f"; expected one of {', '.join(INTERPOLATIONS)} (METHODS_SPEC §3.10.2)")
        from augbench.diffusion.suffixes import SUFFIX_SOURCES

        if self.suffix_source != "auto" and self.suffix_source not in SUFFIX_SOURCES:
            raise ConfigError(f"unknown suffix_source {self.suffix_source!r}"
                              f"{did_you_mean(self.suffix_source, ('auto', *SUFFIX_SOURCES))}; expected auto or one of "
                              f"{', '.join(SUFFIX_SOURCES)}")
        if self.llm is not None:
            from augbench.diffusion.suffixes import SUMMARISERS

            if self.llm not in SUMMARISERS:
                raise ConfigError(f"unknown suffix summariser llm = {self.llm!r}{did_you_mean(self.llm, SUMMARISERS)}; "
                                  f"expected one of {', '.join(SUMMARISERS)} (METHODS_SPEC §3.10.4)")
        captioning = [k for k in CAPTIONER_PARAMS if getattr(self, k) is not None]
        if captioning and self.suffix_source in ("world", "file"):
            raise ConfigError(f"{', '.join(captioning)} only apply to suffix_source = 'captioner', not "
                              f"{self.suffix_source!r}: remove them or set suffix_source = 'captioner'")
        if self.image_size is not None and (isinstance(self.image_size, bool) or int(self.image_size) < 8):
            raise ConfigError(f"image_size must be a resolution in pixels (>= 8) or None for the profile's, "
                              f"got {self.image_size!r}")
        if self.expansion < 0:
            raise ConfigError(f"expansion must be >= 0, got {self.expansion}")
        if self.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")


# --- the method ----------------------------------------------------------------------------------

class DiffII(OfflineMethod):
    """Diff-II (METHODS_SPEC §3.10): circle-interpolated inversions denoised with a suffixed, then plain prompt."""

    family: ClassVar[str] = "diff_ii"
    Config: ClassVar[type[MethodConfig]] = DiffIIConfig
    presets: ClassVar[dict] = {
        "vanilla_t2i": {"concepts": "none", "interpolation": "none", "two_stage": False},
        "cl_only": {"interpolation": "none", "two_stage": False},
        "cl_li": {"interpolation": "li", "two_stage": False},
        "cl_li_td": {"interpolation": "li"},
        "cl_si": {"interpolation": "si", "two_stage": False},
        "cl_si_se": {"interpolation": "circle", "two_stage": False},
        "cl_td": {"interpolation": "none"},
        "jpeg_q75": {"output_format": "jpeg_q75"},
    }
    # the tiny test subset has protocol "full" (no auto split ratio) and a tiny profile (its default
    # suffix source would be the captioner); the tiny dataset has world-style captions
    contract_test_params: ClassVar[dict] = {"split_ratio": 0.3, "suffix_source": "world"}
    card: ClassVar[MethodCard] = MethodCard(
        summary="Diff-II: circle interpolation of DDIM inversions + two-stage (suffixed, then plain) denoising",
        changes="adds floor(5 N_c) images of every class, generated from points on great circles through pairs of "
                "the class's inverted training images",
        labels="hard: one-hot of the class",
        cost="concept learning (lora_ti) once per subset, shared; inversion once per subset (sd15: 200 UNet passes "
             "per training image, no CFG), shared by the presets; per image 25 UNet passes at batch 2 (CFG in one "
             "call) and one VAE decode; text encoder once per (class, suffix)",
        references=("METHODS_SPEC §3.10", "METHODS_SPEC §4 (b), (c)", "METHODS_SPEC §9.5", "P2 §3 L69-172, §4 L178-186"),
        # §4 (b): a real image is replaced by a synthetic image of its own class, hard labels; long-tail
        # suites override to inverse_freq_class (§4 (c))
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    # -- artifacts and planning ---------------------------------------------------------------------

    def suffix_source(self, ctx: MethodContext) -> str:
        """The suffix source after resolving ``auto``."""
        return self._suffix_source_on(ctx.profile)

    def _suffix_source_on(self, profile: Any) -> str:
        cfg = self.config
        if cfg.suffix_source != "auto":
            return cfg.suffix_source
        if cfg.suffix_file:
            return "file"
        from augbench.diffusion.suffixes import default_suffix_source

        return default_suffix_source(profile)

    @property
    def concepts(self) -> str | None:
        """The concept artifact's slot, ``None`` for the vanilla model."""
        return None if self.config.concepts == "none" else self.config.concepts

    def split_ratio(self, subset: Subset) -> float:
        """The effective split ratio: 0 without two-stage denoising, else ``split_ratio`` resolved for ``subset``."""
        return resolve_split_ratio(self.config.split_ratio, subset) if self.config.two_stage else 0.0

    def image_size(self, profile: Any) -> int:
        """The resolution of the inversion pool and of generation: ``image_size``, else the profile's.

        One value for both, because the pool's ``x_T`` are the starting latents that are denoised (§3.10.1-2);
        single-image classes start from noise of the same size (§3.10.5).
        """
        return int(self.config.image_size or profile.image_size)

    def needs_suffixes(self) -> bool:
        """Whether two-stage denoising uses suffixes on some subset (``auto`` resolves to s > 0 everywhere)."""
        cfg = self.config
        return bool(cfg.two_stage) and (cfg.split_ratio == "auto" or float(cfg.split_ratio) > 0)

    def _captioner_options(self) -> dict[str, Any]:
        return {k: getattr(self.config, k) for k in CAPTIONER_PARAMS if getattr(self.config, k) is not None}

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        """The suffixes (with TD), then ``lora_ti`` (unless vanilla), then the inversion pool (when interpolating).

        The suffixes come first although they are used last: with ``suffix_source = captioner`` their
        builder checks and loads BLIP and the summariser, which should fail (a missing model, an unset
        endpoint) before concept learning and inversion spend their minutes, not after (issue 23).
        The order changes no key (the generate stage hashes the sorted artifact keys).
        """
        cfg, concepts = self.config, self.concepts
        specs = []
        if self.split_ratio(subset) > 0:
            from augbench.diffusion.suffixes import suffix_spec

            source = self.suffix_source(ctx)
            path = suffix_path(cfg.suffix_file, subset) if source == "file" and cfg.suffix_file else None
            options = self._captioner_options() if source == "captioner" else {}
            specs.append(suffix_spec(source, path=path, profile=ctx.profile, max_suffixes=cfg.max_suffixes, **options))
        concept_recipe = None
        if concepts:
            from augbench.diffusion.concepts import concept_recipe as recipe_of

            steps = {"steps": cfg.concept_steps} if cfg.concept_steps else {}
            concept_recipe = recipe_of(concepts, ctx.profile, **steps)
            specs.append(ArtifactSpec(concepts, concept_recipe))
        if cfg.interpolation != "none":
            from augbench.diffusion.inversion import inversion_spec

            specs.append(inversion_spec(ctx.profile, concepts, concept_recipe, steps=cfg.inversion_steps,
                                        image_size=self.image_size(ctx.profile)))
        return specs

    def required_models(self, profile: Any) -> dict[str, str]:
        """Models Diff-II loads on ``profile`` (the shared ``OfflineMethod.required_models`` API): the
        pipeline, and with captioner suffixes the BLIP ``captioner`` and its summariser
        (``summariser:openai``: the model name, needs ``AUGBENCH_SUFFIX_LLM_URL``; ``summariser:transformers``:
        the causal LM's folder), as the suffixes artifact will load them (METHODS_SPEC §3.10.4)."""
        models = {"pipeline": profile.pipeline}
        if self.needs_suffixes() and self._suffix_source_on(profile) == "captioner":
            from augbench.diffusion.suffixes import captioner_models

            models.update(captioner_models(profile=profile, **self._captioner_options()))
        return models

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        """Requests ordered by class: ``floor(expansion * N_c)`` per class (or ``budget`` split proportionally).

        Each request records the resolved split ratio and the pair its seed draws (the pair is drawn
        again from the seed in ``generate``, so a regenerated request draws a new one).
        """
        num_classes = ctx.num_classes if ctx is not None and ctx.card is not None else max(subset.labels, default=-1) + 1
        split = self.split_ratio(subset)
        ids_of: dict[int, list[str]] = {}
        for image_id, label in zip(subset.image_ids, subset.labels):
            ids_of.setdefault(label, []).append(image_id)
        counts = subset.class_counts(num_classes)
        if ctx is not None and ctx.card is not None and 0 in counts:
            empty = [ctx.card.class_names[c] for c, n in enumerate(counts) if n == 0]
            raise ConfigError(f"diff_ii: class(es) {', '.join(map(repr, empty[:5]))} have no image in the training part "
                              f"({len(subset.image_ids)} images); Diff-II inverts a class's own images (or, for one "
                              "image, starts from noise, §3.10.5) and cannot generate a class it has never seen — "
                              "use a subset with every class, or a budget for the classes present")
        requests = []
        for label, n in enumerate(class_budgets(counts, self.config.expansion, budget)):
            members = ids_of.get(label, [])
            for k in range(n):
                index = len(requests)
                req_seed = self.request_seed(seed, index)
                sources = self._pair_ids(members, request_draws(req_seed, len(members)))
                requests.append(GenerationRequest(index=index, seed=req_seed, target_class=label, source_ids=sources,
                                                  source_classes=(label,) * len(sources),
                                                  params={"class_request": k, "split_ratio": split}))
        return requests

    def _pair_ids(self, members: Sequence[str], draws: Draws) -> tuple[str, ...]:
        if self.config.interpolation == "none" or draws.pair is None:
            return ()
        i, j = class_pairs(len(members))[draws.pair]
        return (members[i], members[j])

    # -- generation ---------------------------------------------------------------------------------

    def sampler_settings(self, ctx: MethodContext) -> dict[str, Any]:
        cfg = self.config
        return {"num_inference_steps": int(cfg.num_inference_steps), "guidance_scale": float(cfg.guidance_scale),
                "image_size": self.image_size(ctx.profile), "scheduler": "ddim", "eta": 0.0,
                "timestep_spacing": "leading"}

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Initial latents from the pool (or noise), then batched two-stage DDIM; one sample per request."""
        if not requests:
            return []
        cfg = self.config
        settings = self.sampler_settings(ctx)
        from augbench.diffusion.concepts import prompting_pipeline

        warm, prompt_of = prompting_pipeline(ctx, self.concepts)
        template = CONCEPT_PROMPT if self.concepts else PLAIN_PROMPT

        def plain(label: int) -> str:
            return prompt_of(label, template)

        pool = self._pool(ctx) if cfg.interpolation != "none" else None
        if pool is not None:
            check_pool_size(pool, warm.pipe, settings["image_size"])
        suffixes = self._suffixes(ctx) if any(r.params.get("split_ratio", 0) > 0 for r in requests) else []
        scheduler = ddim_scheduler(warm.pipe.scheduler.config)
        out: list[SyntheticSample] = []
        for start in range(0, len(requests), ctx.batch_size):
            chunk = list(requests[start:start + ctx.batch_size])
            starts = [self._initial_latent(r, warm.pipe, pool, settings["image_size"]) for r in chunk]
            prompts = [plain(r.target_class) for r in chunk]
            chosen = [self._suffix(r, suffixes) for r in chunk]
            suffixed = [f"{p} {s}" if s else p for p, s in zip(prompts, chosen, strict=True)]
            images, stages = two_stage_denoise(
                warm, [z for z, _ in starts], prompts, suffixed, [float(r.params.get("split_ratio", 0)) for r in chunk],
                negative_prompt=cfg.negative_prompt, scheduler=scheduler,
                num_inference_steps=settings["num_inference_steps"], guidance_scale=settings["guidance_scale"])
            for r, (_, info), prompt, suffix, image, n_suffixed in zip(chunk, starts, prompts, chosen, images, stages,
                                                                       strict=True):
                out.append(SyntheticSample(
                    encode_output(image, cfg.output_format), one_hot(r.target_class, ctx.num_classes),
                    self.sample_provenance(r, **info, prompt=prompt, suffix=suffix, suffixed_steps=n_suffixed,
                                           split_ratio=float(r.params.get("split_ratio", 0)),
                                           output_format=cfg.output_format, sampler=settings)))
        return out

    def _pool(self, ctx: MethodContext):
        from augbench.diffusion.inversion import INVERSION_KIND, load_inversion_pool

        if INVERSION_KIND not in ctx.artifacts:
            raise ConfigError(f"{self.id}: interpolation {self.config.interpolation!r} needs the {INVERSION_KIND!r} "
                              "artifact (declared by artifacts(); build it as the runner does, with build_artifacts)")
        artifact = ctx.artifacts[INVERSION_KIND]
        cache = self.__dict__.setdefault("_pools", {})
        if artifact.key not in cache or cache[artifact.key][0] != str(artifact.folder):
            cache[artifact.key] = (str(artifact.folder), load_inversion_pool(artifact))
        return cache[artifact.key][1]

    def _suffixes(self, ctx: MethodContext) -> list[str]:
        from augbench.diffusion.suffixes import KIND, read_suffixes

        if KIND not in ctx.artifacts:
            raise ConfigError(f"{self.id}: two-stage denoising needs the {KIND!r} artifact (declared by artifacts())")
        return read_suffixes(ctx.artifacts[KIND])

    @staticmethod
    def _suffix(request: GenerationRequest, suffixes: Sequence[str]) -> str | None:
        if float(request.params.get("split_ratio", 0)) <= 0 or not suffixes:
            return None
        u = request_draws(request.seed, 0).u_suffix
        return suffixes[min(int(u * len(suffixes)), len(suffixes) - 1)]

    def _initial_latent(self, request: GenerationRequest, pipe: Any, pool: Any,
                        size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """``Z`` of the request (§3.10.2; Gaussian for ``none`` and single-image classes, §3.10.5) and its record."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        rows = pool.class_rows(request.target_class) if pool is not None else []
        draws = request_draws(request.seed, len(rows))
        if pool is None or draws.pair is None:
            shape = (1, pipe.unet.config.in_channels, size // pipe.vae_scale_factor, size // pipe.vae_scale_factor)
            noise = randn_tensor(shape, generator=make_generator(request.seed), dtype=torch.float32)
            info: dict[str, Any] = {"interpolation": {"kind": "noise"}, "sources": []}
            if pool is not None:
                info["single_image_class"] = True
            return noise[0], info
        i, j = class_pairs(len(rows))[draws.pair]
        a, b = rows[i], rows[j]
        z, detail = interpolate(self.config.interpolation, pool.latents[a], pool.latents[b], draws.u_lam)
        return z, {"interpolation": detail, "sources": [pool.image_ids[a], pool.image_ids[b]]}


# --- sampling helpers ------------------------------------------------------------------------------

def ddim_scheduler(base_config: Any):
    """DDIM (eta = 0 at ``step``) from the pipeline's config, "leading" spacing unless it says "trailing".

    SD v1.5's config (leading, steps_offset 1) gives 961, 921, ..., 1 for 25 steps (§3.10.3); the embedded
    world's says "linspace", replaced here so both follow SD v1.5's schedule.
    """
    from augbench.diffusion.pipelines import make_scheduler

    sched = make_scheduler("ddim", base_config)
    if sched.config.timestep_spacing not in ("leading", "trailing"):
        sched = type(sched).from_config(sched.config, timestep_spacing="leading")
    return sched


def two_stage_denoise(warm: Any, latents: Sequence[torch.Tensor], plain: Sequence[str], suffixed: Sequence[str],
                      split_ratios: Sequence[float], *, negative_prompt: str, scheduler: Any,
                      num_inference_steps: int, guidance_scale: float) -> tuple[list[np.ndarray], list[int]]:
    """Denoise a batch from ``latents`` with row ``i``'s ``suffixed[i]`` prompt while ``t >= T (1 - s_i)``,
    ``plain[i]`` after (§3.10.3); returns the uint8 images and each row's number of suffixed steps."""
    import torch

    from augbench.diffusion import pipelines as diffusion

    pipe = warm.pipe
    warm.embeddings.get(list(dict.fromkeys([*plain, *suffixed, negative_prompt])))
    plain_e, suffixed_e = warm.embeddings.get(list(plain)), warm.embeddings.get(list(suffixed))
    negative = warm.embeddings.get([negative_prompt] * len(plain))
    probe = type(scheduler).from_config(scheduler.config)
    probe.set_timesteps(num_inference_steps)
    timesteps = [int(t) for t in probe.timesteps]
    total = int(scheduler.config.num_train_timesteps)
    masks = [suffixed_steps(timesteps, s, total) for s in split_ratios]
    use = torch.tensor(masks, dtype=torch.bool)  # [rows, steps]

    def embeds(i: int, t: int) -> torch.Tensor:
        rows = use[:, i].to(plain_e.device)[:, None, None]
        return torch.where(rows, suffixed_e, plain_e)

    x = torch.stack(list(latents)) * scheduler.init_noise_sigma
    final = diffusion.denoise(pipe, x, embeds, negative, num_inference_steps=num_inference_steps,
                              guidance_scale=guidance_scale, scheduler=scheduler)
    return diffusion.decode_latents(pipe, final), [sum(m) for m in masks]


def encode_output(image: np.ndarray, output_format: str) -> np.ndarray:
    """The image as stored: PNG keeps it; ``jpeg_qNN`` round-trips it through PIL JPEG at quality NN (DII: 75)."""
    if output_format == "png":
        return image
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(output_format.rsplit("q", 1)[1]))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


__all__ += ["CAPTIONER_PARAMS", "Draws", "check_pool_size", "class_pairs", "ddim_scheduler", "encode_output",
            "two_stage_denoise"]
