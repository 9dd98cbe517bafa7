"""Real-Filter: Real-Gen text-to-image images kept only when the profile's CLIP agrees (METHODS_SPEC §3.4).

Neither paper defines Real-Filter (P2 cites He et al. 2022); §3.4 fixes two rules:

* ``zeroshot_class`` (HARNESS default) — per image: keep it iff CLIP zero-shot top-1 over the prompts
  ``a photo of a {class name} {meta}`` of all classes is the intended class. A rejected candidate is
  redrawn with the seed ``derive_seed(request seed, "filter", attempt)`` until one passes, at most
  ``max_attempts`` times, so the target count is met after filtering (over-generation, bounded). A
  request that never passes keeps its best candidate, marked unrecognised, and the select stage
  drops it; a class left with no recognised image fails the stage with the class and its rejection
  rate named (``empty_class = "error"``), or keeps its best candidates (``"keep_best"``).
* ``dm_presence`` — Diff-Mix's ``filter_syn_data.py``: softmax of CLIP over "a photo with a {meta} on it"
  vs "a photo without a {meta} on it"; the least confident 10 % of the *whole set* are dropped in the
  select stage.

Generation is Real-Gen (§3.3, HARNESS prompt with the meta word), hard labels; how many candidates were
rejected is kept per image (``rejected`` in provenance) and counted in the record. The CLIP is the
profile's (embedded: the world's tiny CLIP; sd15: ViT-B/32). Training integration (§4): per-class,
same-class replacement with hard labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

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
from augbench.diffusion.sampling import ALLOCATIONS, plan_text_to_image, run_text_to_image, sampler_settings
from augbench.run.seeding import derive_seed
from augbench.synthetic.generate import GenerateError

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["FILTER_RULES", "RealFilter", "RealFilterConfig", "RealFilterError"]

FILTER_RULES = ("zeroshot_class", "dm_presence")


class RealFilterError(GenerateError):
    """Every candidate of a request was rejected within the bound."""


@dataclass(frozen=True)
class RealFilterConfig(MethodConfig):
    rule: str = param("zeroshot_class", "CLIP filter rule", paper="UNSPEC; HARNESS zeroshot_class, DM dm_presence [§3.4]",
                      choices=FILTER_RULES)
    prompt_template: str = param("a photo of a {name} {meta}", "generation and zero-shot prompt", paper="§3.3 HARNESS")
    negative_prompt: str = param("", "unconditional prompt of classifier-free guidance", paper='"" [§1.2]')
    expansion: float = param(1.0, "kept images as a multiple of the real subset size", paper="§3.4: e.g. 5x")
    allocation: str = param("proportional", "how images are allotted to classes", choices=ALLOCATIONS)
    max_attempts: int = param(8, "zeroshot_class: candidates drawn per image before giving up")
    empty_class: str = param("error", "zeroshot_class, a class with no recognised image: error, or keep_best "
                             "(keep its best-scoring candidates; counted in the record)", choices=("error", "keep_best"))
    drop_fraction: float = param(0.1, "dm_presence: share of the whole set dropped", paper="DM: 10 % [§3.4]")
    presence_captions: tuple[str, str] = param(("a photo with a {meta} on it", "a photo without a {meta} on it"),
                                               "dm_presence: the two captions", paper="DM filter_syn_data.py [§3.4]")
    num_inference_steps: int | None = param(None, "sampler steps (None: the profile's, 25)", paper="25 [§3.3]")
    guidance_scale: float | None = param(None, "CFG scale (None: the profile's, 7.5)", paper="7.5 [§3.3]")
    image_size: int | None = param(None, "output resolution (None: the profile's)", paper="512 [§3.3]")
    scheduler: str = param("dpmsolver++", "diffusers scheduler", paper="DPM-Solver++ [§3.3]",
                           choices=("dpmsolver++", "ddim", "pndm"))

    def validate(self) -> None:
        super().validate()
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1), got {self.drop_fraction}")


class RealFilter(OfflineMethod):
    """Real-Gen images filtered by the profile's CLIP (per image or over the whole set)."""

    family: ClassVar[str] = "real_filter"
    Config: ClassVar[type[MethodConfig]] = RealFilterConfig
    presets: ClassVar[dict] = {"dm_presence": {"rule": "dm_presence"}}
    # a random CLIP predicts one class for every image: the per-image rule is tested on its own
    contract_test_params: ClassVar[dict] = {"rule": "dm_presence"}
    card: ClassVar[MethodCard] = MethodCard(
        summary="Real-Filter: text-to-image images kept when CLIP recognises their class (or the object)",
        changes="adds synthetic images of every class that pass a CLIP filter",
        labels="hard: the prompted class",
        cost="text-to-image as SD-random for every candidate (rejected ones too) + one CLIP image pass each",
        references=("METHODS_SPEC §3.4", "METHODS_SPEC §3.3", "P2 §4.1 L178"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    def required_models(self, profile) -> dict[str, str]:
        """The profile's pipeline (Real-Gen, §3.3) and its CLIP (the filter, §3.4)."""
        return {**super().required_models(profile), "clip": profile.clip}

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        cfg = self.config
        num_classes = ctx.num_classes if ctx is not None and ctx.card is not None else max(subset.labels, default=-1) + 1
        prompt = (lambda label: ctx.card.prompt(label, cfg.prompt_template)) if ctx is not None and ctx.card else None
        return plan_text_to_image(lambda i: self.request_seed(seed, i), subset, budget, expansion=cfg.expansion,
                                  allocation=cfg.allocation, num_classes=num_classes, prompt=prompt)

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion import pipelines as diffusion

        if not requests:
            return []
        card = ctx.require_card()
        warm = diffusion.load_warm_pipeline(ctx)
        prompts = [r.prompt or card.prompt(r.target_class, self.config.prompt_template) for r in requests]

        def draw(todo: list[int], attempt: int) -> list[SyntheticSample]:
            seeds = [requests[i].seed if attempt == 0 else derive_seed(requests[i].seed, "filter", attempt) for i in todo]
            samples = run_text_to_image(self, [requests[i] for i in todo], ctx, warm, [prompts[i] for i in todo],
                                        negative_prompt=self.config.negative_prompt,
                                        settings=sampler_settings(self.config, ctx), seeds=seeds)
            for sample, seed in zip(samples, seeds, strict=True):
                sample.provenance["candidate_seed"] = seed
            return samples

        if self.config.rule == "dm_presence":  # filtered over the whole set, in the select stage
            return draw(list(range(len(requests))), 0)
        return self._zeroshot_filtered(requests, ctx, draw)

    def _zeroshot_filtered(self, requests: Sequence[GenerationRequest], ctx: MethodContext,
                           draw: Callable[[list[int], int], list[SyntheticSample]]) -> list[SyntheticSample]:
        """Redraw each request until CLIP recognises its class, at most ``max_attempts`` candidates.

        A request whose candidates are all rejected keeps the one CLIP found most like its class,
        marked ``filter_passed: False``; the select stage drops it (or, per ``empty_class``, keeps it
        when its class would otherwise be empty).
        """
        best: dict[int, tuple[float, SyntheticSample]] = {}
        rejected = [0] * len(requests)
        todo = list(range(len(requests)))
        for attempt in range(self.config.max_attempts):
            candidates = draw(todo, attempt)
            probabilities = self._zero_shot(ctx, [c.image_array() for c in candidates])
            for i, sample, p in zip(todo, candidates, probabilities, strict=True):
                target = requests[i].target_class
                passed = int(p.argmax()) == target
                sample.provenance.update(filter_passed=passed, target_probability=round(float(p[target]), 6))
                if passed or i not in best or p[target] > best[i][0]:
                    best[i] = (float(p[target]), sample)
                rejected[i] += not passed
            todo = [i for i in todo if not best[i][1].provenance["filter_passed"]]
            if not todo:
                break
        for i, (_, sample) in best.items():
            sample.provenance["rejected"] = rejected[i]
        return [best[i][1] for i in range(len(requests))]

    def _zero_shot(self, ctx: MethodContext, images: list[np.ndarray]) -> np.ndarray:
        """CLIP zero-shot probabilities ``[N, C]`` over ``a photo of a {class name} {meta}`` (§3.4)."""
        card = ctx.require_card()
        return _clip_probabilities(ctx, images, [card.prompt(c, self.config.prompt_template)
                                                 for c in range(card.num_classes)])

    def select(self, rows: Sequence[Mapping[str, Any]], load_image: Callable[[int], np.ndarray],
               ctx: MethodContext) -> list[int] | None:
        """``zeroshot_class``: drop the requests CLIP never recognised; ``dm_presence``: drop the images whose
        "with" probability is below the set's ``drop_fraction`` quantile."""
        if not rows:
            return None
        if self.config.rule == "zeroshot_class":
            return self._recognised(rows)
        presence = self.presence_probabilities(ctx, [load_image(i) for i in range(len(rows))])
        threshold = np.quantile(presence, self.config.drop_fraction)
        return [i for i, p in enumerate(presence) if p >= threshold]

    def _recognised(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        by_class: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_class.setdefault(row["target_class"], []).append(i)
        kept, empty = [], []
        for name, indices in by_class.items():
            passed = [i for i in indices if rows[i]["provenance"].get("filter_passed", True)]
            if not passed:
                empty.append(name)
            kept += passed if passed or self.config.empty_class == "error" else indices
        if empty and self.config.empty_class == "error":
            drawn = {n: sum(rows[i]["provenance"].get("rejected", 0) + 1 for i in by_class[n]) for n in empty}
            raise RealFilterError(
                f"real_filter (zeroshot_class): CLIP recognised none of the {sum(drawn.values())} candidates drawn "
                f"for {len(empty)} class(es), rejection rate 100 %: "
                + ", ".join(f"{n!r} ({k} candidates)" for n, k in drawn.items())
                + ". The generator rarely draws these classes recognisably: raise max_attempts, use rule = "
                "'dm_presence', or set empty_class = 'keep_best' to keep their best candidates (flagged)")
        return sorted(kept)

    def presence_probabilities(self, ctx: MethodContext, images: list[np.ndarray]) -> np.ndarray:
        """CLIP's probability of the "with" caption against the "without" one (§3.4)."""
        meta = ctx.require_card().meta
        return _clip_probabilities(ctx, images, [c.format(meta=meta) for c in self.config.presence_captions])[:, 0]


def _clip_probabilities(ctx: MethodContext, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
    """Softmax over ``texts`` of the profile's CLIP logits (``logit_scale`` × cosine), ``[N, len(texts)]``."""
    import torch

    from augbench.metrics.clip import profile_clip_scorer

    scorer = profile_clip_scorer(ctx.profile, ctx.device)
    logits = scorer.model.logit_scale.exp().item() * (scorer.image_features(images) @ scorer.text_features(texts).T)
    return torch.softmax(logits, dim=1).numpy()
