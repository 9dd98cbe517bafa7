"""GeNIe and GeNIe-Ada: generative hard negatives by img2img towards another class (Koohpayegani et al.).

Source: "GeNIe: Generative Hard Negative Images Through Diffusion" (arXiv 2312.02548; v2 2024-03-23 and v3
add GeNIe-Ada) and its code ``UCDvision/GeNIe`` at commit ``ee34b11`` (2024-03-20), cited as [G file:line]
(notebooks: [G file cell k]). Only the abstract and introduction of the paper could be read here (arXiv HTML
v2/v3); its method and experiment sections were not available, so every number below comes from the code and
a paper statement is marked [paper abstract] or [G README] where it comes from those.

What GeNIe does [paper abstract; G README L9, L20]: an image of a *source* class a is edited with Stable
Diffusion towards the text prompt of a *target* class b ≠ a, with a limited noise level, so the result keeps
the source's low-level and background features while showing class b: a hard negative for class a. It is
labelled b. GeNIe-Ada picks the noise level per source image.

Facts used (the reference code), and how the harness follows them:

* Pairs [G genie.py:149-171]: for every target class b, *every* training image of every other class is
  edited once (``imgs = [... if c[1] != ind]``), so each real image gets one edit towards each of the C - 1
  other classes (N (C - 1) images; 4 per image in the 5-way episodes). No class is drawn at random, none is
  chosen by similarity. HARNESS: ``all_pairs = true`` (preset ``repo``) is exactly this enumeration;
  the default edits every real image ``edits_per_image`` = 5 times (P2's expansion rate 5, as the harness's
  other editing methods, METHODS_SPEC §3.5-§3.7) towards distinct other classes, drawn as a random
  permutation of the other classes per image (cycled when 5 > C - 1). Requests are round-major (request k
  edits image ``k mod N``), so every budget gives every real image the same number of edits (±1) and the
  first N (C - 1) requests of ``all_pairs`` are the repo's set.
* Prompt [G genie.py:164]: ``'a photo of a {}.'`` with the class name (the ImageNet folder name without its
  WordNet id, [G genie.py:135-138]); no meta word; the unconditional prompt is diffusers' ``""`` (none is
  passed) [G editor.py:178-182].
* Noise ratio [G editor.py:150-175, 92-93]: the source is VAE-encoded (posterior *mode*, × 0.18215
  [G editor.py:164-165]), noised with ``add_noise`` to timestep ``int(1000 r)`` and denoised only over the
  scheduler timesteps ``t`` with ``t - 1 <= 1000 r``. With 50 DPM-Solver steps that is floor(50 r) steps
  from the timestep just below 1000 r: diffusers' img2img with strength s = r (METHODS_SPEC §1.3), up to
  one timestep of offset (diffusers 0.42's ``DPMSolverMultistepScheduler``, linspace spacing as in 0.19: 25, 30,
  35, 40, 45 steps at r = 0.5 ... 0.9 either way). The harness runs ``augbench.diffusion.pipelines.image_to_image`` with strength r.
  r = 0.8 for GeNIe in every command of [G generate_data.sh:13, 22, 35, 45] (argparse default 0.5
  [G genie.py:42]; the Colab demo uses 0.4 [G GeNIe.ipynb cell 4]: DISAGREE). HARNESS default 0.8; presets
  ``noise05`` ... ``noise09`` are the ratios the repo generated GeNIe sets at for GeNIe-Ada
  ([G few_shot/noise_adaptive.ipynb cells 4, 12]: 0.5, 0.6, 0.7, 0.8, 0.9).
* Sampler [G editor.py:138-142, 29]: SD v1.5 in fp16, ``DPMSolverMultistepScheduler`` from the model's
  config (diffusers' default: DPM-Solver++, order 2), 50 steps, CFG w = 7.5. HARNESS: DPM-Solver++ with the
  profile's steps (25 on sd15, as every other img2img method here, so the methods get equal sampler
  budgets); preset ``repo`` runs 50.
* Source geometry [G genie.py:128-133, 146, 167]: ``Resize(512)`` + ``CenterCrop(512)``; the 512 x 512 edit is
  saved as it is. HARNESS ``crop = "center"``: the centred square of the source is edited at the profile's
  resolution and returned at that square's size; ``"stretch"`` is what Real-Mix / Diff-Mix do (§3.7).
* Labels and training [G genie.py:151-171; few_shot/evaluate_v2.py:55-110]: the edit is saved in the folder
  of class b and read with ``ImageFolder``, i.e. a hard label b; the few-shot classifier (logistic
  regression on the frozen encoder's features) is fitted on the real support features (extracted
  ``caching_epochs`` = 5 times with augmentation, [G README L56]) *concatenated* with the features of all
  generated images. HARNESS: ``concat`` with hard labels (METHODS_SPEC §4: P1's setting); a suite can
  override it per family (``[training.genie] replacement_mode = "same_class"``, the P2-style protocol that
  draws a synthetic image of class b, the label, when a real image of b is fetched).

GeNIe-Ada (preset ``ada``) [G few_shot/noise_adaptive.ipynb cells 4, 12, 14; G README L20]:

1. Edit the same source towards the same target at each candidate ratio r_1 < ... < r_K
   (0.5, 0.6, 0.7, 0.8, 0.9). In the repo these are the GeNIe sets generated at each ratio; their seeding
   (``set_all_seeds(episode)``, one ``torch.randn`` per edit, deterministic DPM-Solver++) gives the k-th
   edit the same starting noise at every ratio. The harness uses the request's generator for every
   candidate, so the candidates share their noise too.
2. Embed the source image x_a, every candidate e_k and the real images of class b with the encoder f,
   each L2-normalised; the prototype of b is the mean of its images' embeddings (not re-normalised).
3. With v = proto_b - f(x_a), the shift between consecutive candidates is the distance of their projections
   on v: |(f(e_k) - f(e_{k+1})) · v| / |v|.
4. Keep the candidate *right after* the largest shift: r* = r_{argmax_k + 1} [cell 12:
   ``n[np.array(embs).argmax()+1]``]; so r_1 (0.5) is never chosen, only a point of the trajectory.

The encoder: in the repo, f is the few-shot backbone (UniSiam ResNet-18/50 pre-trained self-supervised on
the base classes, frozen; [G noise_adaptive.ipynb cell 2]), the same network whose features the classifier is
then fitted on. In augbench the offline methods generate before the classifier is trained (DESIGN.md, "The
method contract"), so no classifier exists yet. DEVIATION: f is the profile's CLIP image encoder
(``augbench.metrics.clip.profile_clip_scorer``: the world's CLIP on the embedded profile, ViT-B/32 on sd15),
likewise a frozen pre-trained encoder whose training did not see the benchmark's labels; the world's oracle
features are not used (sd15 has none, and they were trained on the world's own classes). Everything else
of the selection rule is the notebook's.

Disagreements and defects found in the code:

* DISAGREE (noise ratio): 0.8 in the scripts, 0.5 in argparse, 0.4 in the demo (above).
* BUG (GeNIe-Ada inputs): the notebook reads ``train_negative_noise{r}/meta.csv`` (columns target image,
  source class, source image) [cell 4], which the released ``genie.py`` never writes (it saves
  ``train_genie_noise{r}/<class>/{k}_genie.jpg`` without metadata [G genie.py:143, 170]); and it writes
  ``metadata_r18.pkl`` [cell 4] but reads ``metadata_r50.pkl`` [cells 8, 12]. The harness keeps the pair
  of every candidate by construction (one request = one source and one target).
* DISAGREE (Txt2Img baseline, not part of this method): ``generate_data.sh`` runs ``--method txt2img`` with
  ``--noise 0.8`` [L15], i.e. an img2img of an image of the same class, where the demo uses 1.0 (pure noise).
* The repo's VAE encoding takes the posterior mode; the harness's ``image_to_image`` draws a posterior
  sample as diffusers' img2img does (its standard deviation is tiny next to the added noise).
* UNSPEC: the long-tail experiments' generation (long-tail settings: paper abstract) has no code in the
  repository; the same pairing is used there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

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
from augbench.diffusion.sampling import check_strengths, load_sources, sampler_settings
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["ADA_RATIOS", "CROPS", "GeNIe", "GeNIeConfig", "ada_choice", "center_square", "plan_hard_negatives",
           "trajectory_shifts"]

#: the noise ratios the repo generated GeNIe sets at and GeNIe-Ada chooses among [G noise_adaptive.ipynb cell 12]
ADA_RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9)
CROPS = ("center", "stretch")


@dataclass(frozen=True)
class GeNIeConfig(MethodConfig):
    prompt_template: str = param("a photo of a {name}.", "prompt of the target class b; {name}: its name, "
                                 "{meta}: the dataset's meta word", paper="G genie.py:164: 'a photo of a {}.'")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance",
                                 paper='"" (none passed) [G editor.py:178-182]')
    noise_ratio: float = param(0.8, "noise ratio r = img2img strength (floor(N*r) of N steps, METHODS_SPEC §1.3)",
                               paper="G generate_data.sh: 0.8; argparse 0.5; demo 0.4; Ada grid 0.5-0.9")
    edits_per_image: int = param(5, "edits of every real image, each towards a different other class "
                                 "(cycled when more than C - 1)", paper="G: C - 1 (all_pairs); P2 expansion 5")
    all_pairs: bool = param(False, "edit every real image once towards each of the C - 1 other classes "
                            "(overrides edits_per_image)", paper="G genie.py:149-171: true")
    adaptive: bool = param(False, "GeNIe-Ada: edit at every ratio in `ratios`, keep the one right after the "
                           "largest shift of the CLIP embedding towards class b", paper="G noise_adaptive.ipynb")
    ratios: tuple[float, ...] = param(ADA_RATIOS, "GeNIe-Ada's candidate noise ratios (increasing)",
                                      paper="G noise_adaptive.ipynb cell 12: (0.5, 0.6, 0.7, 0.8, 0.9)")
    crop: str = param("center", "source geometry: centred square (repo) or the whole image stretched (Diff-Mix)",
                      paper="G genie.py:128-133: Resize + CenterCrop 512", choices=CROPS)
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25)",
                                            paper="G editor.py:142: 50 (DPM-Solver)")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper="7.5 [G editor.py:29]")
    image_size: int | None = param(None, "model resolution (None: the profile's)", paper="512 [G genie.py:146]")
    scheduler: str = param("dpmsolver++", "diffusers scheduler", paper="DPMSolverMultistep [G editor.py:140]",
                           choices=("dpmsolver++", "ddim", "pndm"))

    def validate(self) -> None:
        super().validate()
        check_strengths(self.noise_ratio, self.ratios)
        if self.edits_per_image < 1:
            raise ConfigError(f"edits_per_image must be >= 1, got {self.edits_per_image}")
        if len(self.ratios) < 2 or any(b <= a for a, b in zip(self.ratios, self.ratios[1:])):
            raise ConfigError(f"ratios must be at least two increasing noise ratios (GeNIe-Ada compares "
                              f"consecutive edits), got {list(self.ratios)}; e.g. {list(ADA_RATIOS)}")


PRESETS = {
    # the repo's generation: every (image, other class) pair once, 50 DPM-Solver steps, r = 0.8
    "repo": {"all_pairs": True, "num_inference_steps": 50},
    "noise05": {"noise_ratio": 0.5},
    "noise06": {"noise_ratio": 0.6},
    "noise07": {"noise_ratio": 0.7},
    "noise09": {"noise_ratio": 0.9},
    "ada": {"adaptive": True},
    "ada_repo": {"adaptive": True, "all_pairs": True, "num_inference_steps": 50},
}


def plan_hard_negatives(run_seed: int, request_seed: Callable[[int], int], subset: Subset, budget: int | None, *,
                        edits_per_image: int, all_pairs: bool) -> list[GenerationRequest]:
    """GeNIe's (source image, target class) pairs, one request each; the target class is never the source's.

    Request ``k`` edits real image ``k mod N`` (round ``k // N``); an image's targets are a permutation of the
    other classes present in ``subset``, drawn from ``derive_seed(run seed, "genie-targets", image id, cycle)``
    and cycled, so an image's first C - 1 edits go to distinct classes and ``all_pairs`` (M = C - 1) is the
    repo's enumeration [G genie.py:149-171]. Default budget: ``M * N``. ``strength`` and ``prompt`` are left to
    the caller.

    Raises:
        ConfigError: fewer than two classes in ``subset`` (a hard negative needs another class).
    """
    ids, labels = list(subset.image_ids), [int(label) for label in subset.labels]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"GeNIe edits an image of one class towards another; the subset has {len(classes)} "
                          "class(es): use a training subset with at least two classes")
    per_image = len(classes) - 1 if all_pairs else int(edits_per_image)
    total = int(budget) if budget is not None else per_image * len(ids)
    orders: dict[tuple[int, int], list[int]] = {}
    requests = []
    for index in range(total):
        k, rnd = index % len(ids), index // len(ids)
        others = [c for c in classes if c != labels[k]]
        cycle, position = divmod(rnd, len(others))
        if (k, cycle) not in orders:
            rng = np.random.default_rng(derive_seed(int(run_seed), "genie-targets", ids[k], cycle))
            orders[k, cycle] = [others[int(j)] for j in rng.permutation(len(others))]
        requests.append(GenerationRequest(index=index, seed=request_seed(index), target_class=orders[k, cycle][position],
                                          source_ids=(ids[k],), source_classes=(labels[k],), params={"edit": rnd}))
    return requests


def center_square(image: np.ndarray) -> np.ndarray:
    """The centred ``s x s`` square of an ``[H, W, 3]`` image, ``s = min(H, W)`` (torchvision ``CenterCrop``'s
    offsets, ``round((H - s) / 2)``), as the repo's ``Resize(512)`` + ``CenterCrop(512)`` [G genie.py:146]."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return image[top:top + s, left:left + s]


def trajectory_shifts(source: np.ndarray, edits: np.ndarray, prototype: np.ndarray) -> np.ndarray:
    """GeNIe-Ada's semantic shifts [G noise_adaptive.ipynb cell 12]: ``|(e_k - e_{k+1}) . v| / |v|``.

    Args:
        source: the source image's embedding ``[D]``; edits: the candidates' embeddings ``[K, D]`` in ratio
            order; prototype: the target class's mean embedding ``[D]``.

    Returns:
        ``[K - 1]`` distances between consecutive candidates projected on ``v = prototype - source`` (zeros when
        the source sits on the prototype, so the first shift wins the tie, as ``argmax`` does).
    """
    v = np.asarray(prototype, np.float64) - np.asarray(source, np.float64)
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        return np.zeros(len(edits) - 1)
    return np.abs(np.diff(np.asarray(edits, np.float64) @ v / norm))


def ada_choice(ratios: Sequence[float], shifts: np.ndarray) -> int:
    """Index of the ratio right after the largest shift: ``argmax(shifts) + 1`` [G noise_adaptive.ipynb cell 12]."""
    if len(shifts) != len(ratios) - 1:
        raise ValueError(f"{len(ratios)} ratios need {len(ratios) - 1} shifts, got {len(shifts)}")
    return int(np.argmax(shifts)) + 1


def _edit_chunk(pipe, warm, settings: dict, negative_prompt: str, sources: list[np.ndarray],
                chunk: list[GenerationRequest], prompts: list[str], strengths: list[float]) -> list[np.ndarray]:
    """img2img of a chunk's (cropped) sources at ``strengths``, one generator per request seed (METHODS_SPEC §1.3)."""
    from augbench.diffusion import pipelines as diffusion

    return diffusion.image_to_image(
        pipe, sources, warm.embeddings.get(prompts), warm.embeddings.get([negative_prompt] * len(chunk)), strengths,
        [make_generator(r.seed) for r in chunk], num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"], size=settings["image_size"])


class GeNIe(OfflineMethod):
    """GeNIe: img2img of a real image of class a with the prompt of another class b at noise ratio r, label b."""

    family: ClassVar[str] = "genie"
    Config: ClassVar[type[MethodConfig]] = GeNIeConfig
    presets: ClassVar[dict] = PRESETS
    # the tiny test profile samples 2 steps, where r = 0.5 runs one step and r < 0.5 none (§1.3)
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 4}
    card: ClassVar[MethodCard] = MethodCard(
        summary="GeNIe: hard negatives — img2img of a real image of class a with the prompt of another class b "
                "at noise ratio r (0.8), labelled b; GeNIe-Ada (preset ada) picks r per image",
        changes="adds edits of every real image towards other classes (repo: each of the C - 1 others once), "
                "keeping the source's background and low-level features",
        labels="hard: the prompted (target) class b",
        cost="per image floor(N*r) UNet passes at batch 2 (CFG in one call), one VAE encode and decode; "
             "GeNIe-Ada: one edit per candidate ratio (5: ~3.5 N UNet passes) and CLIP image passes",
        references=("Koohpayegani et al., GeNIe, arXiv 2312.02548", "UCDvision/GeNIe genie.py, editor.py, "
                    "few_shot/noise_adaptive.ipynb, few_shot/evaluate_v2.py", "METHODS_SPEC §1.3",
                    "METHODS_SPEC §4 (concat)"),
        training=TrainingIntegration(replacement_mode="concat", labels="hard"),
    )

    def required_models(self, profile) -> dict[str, str]:
        """The profile's pipeline, and for GeNIe-Ada its CLIP (the embedding of the trajectory)."""
        extra = {"clip": profile.clip} if self.config.adaptive else {}
        return {**super().required_models(profile), **extra}

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        requests = plan_hard_negatives(seed, lambda i: self.request_seed(seed, i), subset, budget,
                                       edits_per_image=cfg.edits_per_image, all_pairs=cfg.all_pairs)
        of_class: dict[int, list[str]] = {}
        for image_id, label in zip(subset.image_ids, subset.labels):
            of_class.setdefault(int(label), []).append(image_id)
        card = ctx.card if ctx is not None else None
        out = []
        for r in requests:
            # GeNIe-Ada's prototype of b: the training part's images of b, carried so generate needs no setup
            params = {**r.params, "ratios": list(cfg.ratios), "prototype_ids": of_class[r.target_class]} \
                if cfg.adaptive else r.params
            out.append(dataclasses.replace(r, strength=None if cfg.adaptive else float(cfg.noise_ratio), params=params,
                                           prompt=card.prompt(r.target_class, cfg.prompt_template) if card else None))
        return out

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion

        if not requests:
            return []
        cfg, card = self.config, ctx.require_card()
        settings = sampler_settings(cfg, ctx)
        warm = diffusion.load_warm_pipeline(ctx)
        pipe = diffusion.pipeline_view(warm, settings["scheduler"])
        prompts = [r.prompt or card.prompt(r.target_class, cfg.prompt_template) for r in requests]
        warm.embeddings.get(list(dict.fromkeys([*prompts, cfg.negative_prompt])))
        features: dict[str, np.ndarray] = {}  # CLIP embeddings of real images, per id (GeNIe-Ada)
        out: list[SyntheticSample] = []
        for start in range(0, len(requests), ctx.batch_size):
            chunk = list(requests[start:start + ctx.batch_size])
            chunk_prompts = prompts[start:start + ctx.batch_size]
            sources = load_sources(ctx, chunk)
            if cfg.crop == "center":
                sources = [center_square(s) for s in sources]

            edit = functools.partial(_edit_chunk, pipe, warm, settings, cfg.negative_prompt, sources, chunk,
                                     chunk_prompts)
            if cfg.adaptive:
                images, extras = self._adaptive(ctx, chunk, edit, features)
            else:
                images, extras = edit([float(r.strength) for r in chunk]), [{} for _ in chunk]
            for r, prompt, image, extra in zip(chunk, chunk_prompts, images, extras, strict=True):
                prov = self.sample_provenance(r, prompt=prompt, sampler=settings, crop=cfg.crop, **extra)
                out.append(SyntheticSample(image, one_hot(r.target_class, ctx.num_classes), prov))
        return out

    def _adaptive(self, ctx: MethodContext, chunk: list[GenerationRequest],
                  edit: Callable[[list[float]], list[np.ndarray]],
                  features: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        """GeNIe-Ada for a chunk: every candidate ratio's edit, CLIP embeddings, the edit right after the largest
        shift towards class b. Returns the kept images and their provenance (``strength`` = the chosen ratio)."""
        from augbench.metrics.clip import profile_clip_scorer

        ratios = [float(x) for x in self.config.ratios]
        candidates = [edit([ratio] * len(chunk)) for ratio in ratios]  # [K][B]
        scorer = profile_clip_scorer(ctx.profile, ctx.device)
        wanted = [i for r in chunk for i in (r.source_ids[0], *r.params["prototype_ids"]) if i not in features]
        wanted = list(dict.fromkeys(wanted))
        if wanted:
            real = [np.asarray(ctx.source.load_image(i).convert("RGB")) for i in wanted]
            for image_id, f in zip(wanted, scorer.image_features(real).numpy(), strict=True):
                features[image_id] = f
        edited = scorer.image_features([img for per_ratio in candidates for img in per_ratio]).numpy()
        edited = edited.reshape(len(ratios), len(chunk), -1)
        images, extras = [], []
        for b, r in enumerate(chunk):
            prototype = np.mean([features[i] for i in r.params["prototype_ids"]], axis=0)
            shifts = trajectory_shifts(features[r.source_ids[0]], edited[:, b], prototype)
            j = ada_choice(ratios, shifts)
            images.append(candidates[j][b])
            extras.append({"strength": ratios[j], "ada": {"ratios": ratios, "chosen": ratios[j],
                                                          "shifts": [round(float(s), 6) for s in shifts]}})
        return images, extras
