"""Adapted pipelines: the base model plus a ``ti`` / ``lora_ti`` artifact, loaded for generation.

``load_adapted_pipeline(ctx, artifact)`` (= ``augbench.diffusion.pipelines.load_warm_pipeline(ctx, artifact=...)``)
returns a ``WarmPipeline`` cached in ``ctx.pipelines`` per (base model, revision, dtype, device,
artifact kind, key and folder). It is loaded *from disk* for the artifact alone: the class tokens are
added to its own tokenizer and text encoder and the LoRA to its own UNet, so the vanilla warm
pipeline a vanilla method uses in the same process is never touched (DESIGN.md, "Vanilla vs adapted
pipelines never share mutated modules").

The returned pipeline carries ``warm.class_tokens: dict[int, str]`` (class index -> the prompt token,
``<class_i>`` for ``lora_ti``, ``<class_name>`` for ``ti``), ``warm.artifact`` and ``warm.kind``;
:func:`concept_prompt` builds a class's prompt from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from augbench.diffusion.pipelines import WarmPipeline, load_warm_pipeline

__all__ = ["class_tokens", "concept_prompt", "load_adapted_pipeline"]


def load_adapted_pipeline(ctx: Any, artifact: Any) -> WarmPipeline:
    """The process's warm pipeline of ``ctx.profile``'s base model with ``artifact`` applied, loaded once.

    Args:
        ctx: the method context (profile, device, card, pipeline cache).
        artifact: a ``augbench.run.artifacts.Artifact`` of kind ``ti`` or ``lora_ti`` (built or imported), or
            the name of one in ``ctx.artifacts``.

    Raises:
        ValueError: a file of the artifact is missing or unreadable (the message names it), or the
            artifact does not fit the base model.
    """
    return load_warm_pipeline(ctx, artifact=artifact)


def class_tokens(warm: WarmPipeline) -> dict[int, str]:
    tokens = getattr(warm, "class_tokens", None)
    if not tokens:
        raise ValueError("this warm pipeline has no learned class tokens: load it with "
                         "load_adapted_pipeline(ctx, ctx.artifacts['lora_ti']) (or 'ti')")
    return tokens


def concept_prompt(warm: WarmPipeline, card: Any, label: int, template: str = "a photo of a {token} {meta}") -> str:
    """A class's prompt with its learned token, e.g. ``a photo of a <class_3> bird`` (METHODS_SPEC §1.7).

    ``template`` may use ``{token}``, ``{meta}`` (the card's meta-class word) and ``{name}`` (the class
    name, ``_`` and ``/`` as spaces); repeated spaces are collapsed (an empty meta leaves none behind).
    DA-Fusion's prompt is ``template="a photo of a {token}"``; NoiseCutMix's code prompt is
    ``"a phot of a {token} {meta}"``.
    """
    tokens = class_tokens(warm)
    if label not in tokens:
        raise ValueError(f"class {label} has no learned token (classes 0..{len(tokens) - 1})")
    name = " ".join(card.class_names[label].replace("_", " ").replace("/", " ").split())
    return " ".join(template.format(token=tokens[label], meta=getattr(card, "meta", "") or "", name=name).split())


def prompting_pipeline(ctx: Any, concepts: str | None) -> tuple[WarmPipeline, Callable[[int, str], str]]:
    """The warm pipeline a text-prompted method samples with, and its prompt function ``(label, template)``.

    With a concept artifact (``concepts`` names its slot in ``ctx.artifacts``): the adapted pipeline and
    learned-token prompts (:func:`concept_prompt`); without (``None`` or ``"none"``): the profile's
    pipeline and the card's class-name prompts. One definition for SD-random/Diff-Gen, the Diff-Mix
    family, NoiseCutMix and Diff-II.
    """
    card = ctx.require_card()
    if concepts and concepts != "none":
        warm = load_warm_pipeline(ctx, artifact=ctx.artifacts[concepts])
        return warm, lambda label, template: concept_prompt(warm, card, label, template)
    return load_warm_pipeline(ctx), lambda label, template: card.prompt(label, template)
