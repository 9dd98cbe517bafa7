"""Planning and batched sampling loops shared by offline methods (METHODS_SPEC §1.3, §3.1, §3.3-§3.6).

SD-random, Real-Gen/Real-Filter (text-to-image) and Real-Guidance, DA-Fusion and the Diff-Mix family
(img2img of real images) differ in the model (vanilla or adapted), the prompt and how classes,
sources and strengths are chosen; allotting images to classes, planning edits and running either
loop batched is the same, so it lives here and the method modules stay independent of each other.

Planning (:func:`plan_edits`) is a pure function of the subset and the run seed. Each request's own
seed (``request_seed(run seed, family, index)``) also draws its random choices — the source image
for ``random_of_class`` and the strength when several are allowed — with a NumPy generator seeded from
it, so the plan does not depend on batching or workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from augbench.contract import ConfigError, GenerationRequest, MethodContext, SyntheticSample, one_hot
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset

EDIT_SOURCES = ("each", "random_of_class")
ALLOCATIONS = ("proportional", "uniform")


def check_strengths(strength: float, strengths: Sequence[float]) -> None:
    """Strengths live in (0, 1] (METHODS_SPEC §1.3: 1 means pure noise)."""
    for s in (strength, *strengths):
        if not 0.0 < float(s) <= 1.0:
            raise ConfigError(f"strength {s} is outside (0, 1]: img2img strength s runs floor(N*s) of N steps "
                              "(METHODS_SPEC §1.3); s = 1 starts from pure noise")


def plan_edits(request_seed: Callable[[int], int], subset: Subset, budget: int | None, *, edits_per_image: int,
               source: str, strength: float, strengths: Sequence[float] = ()) -> list[GenerationRequest]:
    """The edit requests for ``subset``.

    Args:
        request_seed: ``index -> seed`` (the method's ``request_seed`` bound to the run seed).
        subset: the real training part.
        budget: number of edits (default ``edits_per_image * |subset|``; a budget cycles over the images).
        edits_per_image: M edits of every real image (DAF ``--num-synthetic``; P2's expansion rate 5).
        source: ``each`` — request k edits image ``k // M`` (DAF, §3.5/§3.6); ``random_of_class`` — the
            target classes follow the real images, the source is a uniformly random real image of that
            class (DM ``real-aug``, §3.5).
        strength: the img2img strength when ``strengths`` is empty.
        strengths: when given, every request draws its strength uniformly from them (DA-Fusion's
            {0.25, 0.5, 0.75, 1.0}, DM's ``uniform`` {0.3, 0.5, 0.7, 0.9}).
    """
    if source not in EDIT_SOURCES:
        raise ConfigError(f"unknown edit source {source!r}; expected one of {', '.join(EDIT_SOURCES)}")
    check_strengths(strength, strengths)
    ids, labels = list(subset.image_ids), list(subset.labels)
    by_class: dict[int, list[str]] = {}
    for image_id, label in zip(ids, labels):
        by_class.setdefault(label, []).append(image_id)
    total = int(budget) if budget is not None else edits_per_image * len(ids)
    requests = []
    for index in range(total):
        k = (index // edits_per_image) % max(len(ids), 1)
        seed = request_seed(index)
        rng = np.random.default_rng(derive_seed(seed, "edit-choices"))
        label = labels[k]
        src = ids[k] if source == "each" else by_class[label][int(rng.integers(len(by_class[label])))]
        s = float(strengths[int(rng.integers(len(strengths)))]) if strengths else float(strength)
        requests.append(GenerationRequest(index=index, seed=seed, target_class=label, source_ids=(src,),
                                          source_classes=(label,), strength=s,
                                          params={"edit": index % edits_per_image}))
    return requests


CLASS_DRAWS = ("multinomial", "exact_per_class")
SOURCE_DRAWS = ("of_class", "whole_split")


def plan_translations(request_seed: Callable[[int], int], subset: Subset, budget: int | None, *, expansion: float,
                      inter_class: bool, strength: float, strengths: Sequence[float] = (),
                      class_draw: str = "multinomial", source_draw: str = "of_class") -> list[GenerationRequest]:
    """Diff-Mix's task list (METHODS_SPEC §3.7 steps 1-4; DM ``scripts/sample_mp.py``), one request per task.

    Args:
        request_seed: ``index -> seed``; each task's draws come from a generator seeded from its seed.
        subset: the real training part.
        budget: number of tasks (default ``round(expansion * |subset|)``, DM's ``multiplier * |train|``).
        expansion: DM's ``--syn_dataset_mulitiplier`` (5: P2's "expansion rate 5").
        inter_class: ``False`` — one class c drawn uniformly, source class = target class (``real-aug``,
            ``diff-aug``); ``True`` — source class a and target class b drawn independently and uniformly
            (``real-mix``, ``diff-mix``; a = b with probability 1/C).
        strength / strengths: the fixed img2img strength, or draw one per task from ``strengths``
            (DM ``--strength_strategy uniform``: {0.3, 0.5, 0.7, 0.9}).
        class_draw: ``multinomial`` (DM: classes drawn per task, so per-class counts vary) or
            ``exact_per_class`` (HARNESS option: target classes cycle through the classes, so every class
            gets the same count ±1).
        source_draw: ``of_class`` — a uniformly random real image of class a (DM); ``whole_split`` — DM's
            long-tail quirk (§3.7 step 4, DISAGREE): the source is drawn from the whole training part and
            the drawn source class is ignored, so sources follow the (imbalanced) class distribution;
            the request's source class is then the drawn image's class, so soft labels stay truthful.

    The classes are those present in ``subset`` (every class, in the papers' protocols).
    """
    if class_draw not in CLASS_DRAWS:
        raise ConfigError(f"unknown class_draw {class_draw!r}; expected one of {', '.join(CLASS_DRAWS)}")
    if source_draw not in SOURCE_DRAWS:
        raise ConfigError(f"unknown source_draw {source_draw!r}; expected one of {', '.join(SOURCE_DRAWS)}")
    check_strengths(strength, strengths)
    ids, labels = list(subset.image_ids), list(subset.labels)
    by_class: dict[int, list[str]] = {}
    for image_id, label in zip(ids, labels):
        by_class.setdefault(label, []).append(image_id)
    classes = sorted(by_class)
    total = int(budget) if budget is not None else int(math.floor(expansion * len(ids) + 0.5))
    requests = []
    for index in range(total if classes else 0):
        seed = request_seed(index)
        rng = np.random.default_rng(derive_seed(seed, "dm-task"))
        if class_draw == "exact_per_class":
            target = classes[index % len(classes)]
        else:
            target = classes[int(rng.integers(len(classes)))]
        source_class = classes[int(rng.integers(len(classes)))] if inter_class else target
        if source_draw == "whole_split":
            k = int(rng.integers(len(ids)))
            source_id, source_class = ids[k], labels[k]
        else:
            pool = by_class[source_class]
            source_id = pool[int(rng.integers(len(pool)))]
        s = float(strengths[int(rng.integers(len(strengths)))]) if strengths else float(strength)
        requests.append(GenerationRequest(index=index, seed=seed, target_class=target, source_ids=(source_id,),
                                          source_classes=(source_class,), strength=s, params={"task": index}))
    return requests


def load_sources(ctx: MethodContext, requests: Sequence[GenerationRequest]) -> list[np.ndarray]:
    """The requests' source images as uint8 ``[H, W, 3]`` (each at its own size)."""
    if ctx.source is None:
        raise ValueError("editing methods need the dataset's images: build MethodContext(source=...)")
    return [np.asarray(ctx.source.load_image(r.source_ids[0]).convert("RGB")) for r in requests]


def run_edits(method, requests: Sequence[GenerationRequest], ctx: MethodContext, warm, prompts: Sequence[str], *,
              negative_prompt: str, settings: dict,
              label: Callable[[GenerationRequest], np.ndarray] | None = None) -> list[SyntheticSample]:
    """Batched img2img of the requests' sources.

    ``settings``: ``num_inference_steps``, ``guidance_scale``, ``image_size``, ``scheduler``.
    ``label``: the request's label vector (default: one-hot of the target class; inter-class methods
    pass Diff-Mix's soft label).
    """
    from augbench.diffusion import pipelines as diffusion

    pipe = diffusion.pipeline_view(warm, settings["scheduler"])
    warm.embeddings.get(list(dict.fromkeys([*prompts, negative_prompt])))
    out: list[SyntheticSample] = []
    for start in range(0, len(requests), ctx.batch_size):
        chunk = list(requests[start:start + ctx.batch_size])
        chunk_prompts = list(prompts[start:start + ctx.batch_size])
        images = diffusion.image_to_image(
            pipe, load_sources(ctx, chunk), warm.embeddings.get(chunk_prompts),
            warm.embeddings.get([negative_prompt] * len(chunk)), [r.strength for r in chunk],
            [make_generator(r.seed) for r in chunk], num_inference_steps=settings["num_inference_steps"],
            guidance_scale=settings["guidance_scale"], size=settings["image_size"])
        for r, prompt, image in zip(chunk, chunk_prompts, images, strict=True):
            vec = one_hot(r.target_class, ctx.num_classes) if label is None else label(r)
            out.append(SyntheticSample(image, vec, method.sample_provenance(r, prompt=prompt, sampler=settings)))
    return out


def allocate(counts: Sequence[int], total: int, mode: str = "proportional") -> list[int]:
    """Split ``total`` images over classes.

    Args:
        counts: real images per class (index = label).
        total: images to allot.
        mode: ``proportional`` to ``counts`` (largest remainder; ties to the lower class index) or
            ``uniform`` over the classes present in ``counts`` (remainder to the lower indices).

    Returns:
        Images per class; sums to ``total`` (0 when no class has real images).
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if mode == "uniform":
        weights = [1 if c > 0 else 0 for c in counts]
    elif mode == "proportional":
        weights = list(counts)
    else:
        raise ValueError(f"unknown allocation {mode!r}; expected one of {ALLOCATIONS}")
    wsum = sum(weights)
    if wsum == 0 or total == 0:
        return [0] * len(counts)
    quotas = [total * w / wsum for w in weights]
    out = [math.floor(q) for q in quotas]
    rest = total - sum(out)
    order = sorted(range(len(counts)), key=lambda c: (-(quotas[c] - out[c]), c))
    for c in order[:rest]:
        out[c] += 1
    return out


def plan_text_to_image(request_seed: Callable[[int], int], subset: Subset, budget: int | None, *,
                       expansion: float, allocation: str, num_classes: int,
                       prompt: Callable[[int], str] | None = None) -> list[GenerationRequest]:
    """Requests ordered by class, ``budget`` (default ``round(expansion * |subset|)``) in total."""
    total = int(budget) if budget is not None else int(math.floor(expansion * len(subset.labels) + 0.5))
    requests = []
    for label, n in enumerate(allocate(subset.class_counts(num_classes), total, allocation)):
        text = prompt(label) if prompt is not None else None
        for k in range(n):
            index = len(requests)
            requests.append(GenerationRequest(index=index, seed=request_seed(index), target_class=label, prompt=text,
                                              params={"class_request": k}))
    return requests


def run_text_to_image(method, requests: Sequence[GenerationRequest], ctx: MethodContext, warm,
                      prompts: Sequence[str], *, negative_prompt: str, settings: dict,
                      seeds: Sequence[int] | None = None) -> list[SyntheticSample]:
    """Batched text-to-image (CFG in one UNet call, cached prompt embeddings, one generator per request).

    ``seeds`` overrides the requests' seeds (a filter's retry draws); provenance keeps the request seed.
    """
    from augbench.diffusion import pipelines as diffusion

    pipe = diffusion.pipeline_view(warm, settings["scheduler"])
    # All distinct prompts and the unconditional one in one text-encoder call, once per process.
    warm.embeddings.get(list(dict.fromkeys([*prompts, negative_prompt])))
    seeds = list(seeds) if seeds is not None else [r.seed for r in requests]
    out: list[SyntheticSample] = []
    for start in range(0, len(requests), ctx.batch_size):
        chunk = list(requests[start:start + ctx.batch_size])
        chunk_prompts = list(prompts[start:start + ctx.batch_size])
        images = diffusion.text_to_image(
            pipe, warm.embeddings.get(chunk_prompts), warm.embeddings.get([negative_prompt] * len(chunk)),
            [make_generator(s) for s in seeds[start:start + ctx.batch_size]],
            num_inference_steps=settings["num_inference_steps"], guidance_scale=settings["guidance_scale"],
            height=settings["image_size"], width=settings["image_size"])
        for r, prompt, image in zip(chunk, chunk_prompts, images, strict=True):
            out.append(SyntheticSample(image, one_hot(r.target_class, ctx.num_classes),
                                       method.sample_provenance(r, prompt=prompt, sampler=settings)))
    return out


def sampler_settings(config, ctx: MethodContext) -> dict:
    """Steps, guidance, resolution and scheduler: the method's values, else the profile's defaults."""
    prof = ctx.profile
    return {
        "num_inference_steps": int(config.num_inference_steps or prof.num_inference_steps),
        "guidance_scale": float(config.guidance_scale if config.guidance_scale is not None else prof.guidance_scale),
        "image_size": int(config.image_size or prof.image_size),
        "scheduler": config.scheduler,
    }


__all__ = ["ALLOCATIONS", "CLASS_DRAWS", "EDIT_SOURCES", "SOURCE_DRAWS", "allocate", "check_strengths", "load_sources",
           "plan_edits", "plan_text_to_image", "plan_translations", "run_edits", "run_text_to_image", "sampler_settings"]


def sd14_pipeline(profile, method: str) -> str:
    """The profile's Stable Diffusion v1.4 (``profile.extra["sd14_pipeline"]``) for a method whose
    ``base_model = 'sd14'`` reproduces its reference code's model (DA-Fusion's and GIF's repositories use v1.4);
    a ConfigError naming the method and where to point it when the profile offers none."""
    from augbench.contract import ConfigError

    path = profile.extra.get("sd14_pipeline")
    if not path:
        raise ConfigError(f"{method} base_model = 'sd14' needs a profile that offers SD v1.4; profile "
                          f"{profile.name!r} has none (sd15 does: CompVis/stable-diffusion-v1-4, or a local "
                          "copy through AUGBENCH_SD15_SD14)")
    return path

