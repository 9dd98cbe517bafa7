"""Concept-learning recipes per profile (METHODS_SPEC §1.4, §1.5; DESIGN.md "Shared diffusion machinery").

A method puts ``concept_recipe(kind, profile)`` into its ``ArtifactSpec(kind, recipe)``; the recipe is
part of the artifact's key, so two methods asking for the same kind on the same subset share one build.

* ``sd15`` holds the reference values: ``lora_ti`` = Diff-Mix's ``train_lora.py`` (rank 10 on every
  UNet attention projection, one token ``<class_i>`` per class initialised from CLIP token 42170,
  AdamW 0.9/0.999/1e-8/1e-2, lr 5e-5 for LoRA and tokens, clip 1.0 on LoRA only, 35,000 steps,
  512 px); ``ti`` = DA-Fusion's ``fine_tune.py`` (one token per class initialised from ``the``, 1,000
  steps per class, batch 4, lr 5e-4 x batch = 2e-3, 27 ``imagenet_templates_small`` captions).
  HARNESS: ``lora_ti`` batch 2 on one device (Diff-Mix: 2 per GPU on 4 GPUs, effective 8; set
  ``batch_size = 8`` to match the effective batch), 512 px (Diff-Mix's script says 224, its launch
  config 512; METHODS_SPEC §1.4), fp16 autocast on CUDA with the frozen weights in fp16 and the trained
  ones in fp32, with a GradScaler (Diff-Mix and DA-Fusion: accelerate's fp16 mixed precision), seed 42
  (Diff-Mix's); ``ti`` runs on the profile's base model (SD v1.5 for parity, DA-Fusion used v1.4), all
  classes in one batched loop (``augbench.diffusion.concepts.training``), seed 0.
* ``embedded`` is the CPU recipe for the miniature world (64 px), sized by oracle fidelity against
  training steps (below), within 5 min (``lora_ti``) / 3 min (``ti``) for toybirds 5-shot on 2 cores.
* ``tiny`` is for tests on the tiny random Stable Diffusion of ``augbench.testing`` (a few steps).

Memory keys (both kinds; ``augbench.diffusion.concepts.memory`` says what each does): ``micro_batch``
(rows per forward + backward, gradients accumulated within the optimiser step; 0 = every row of the
step at once), ``encode_batch`` (images per VAE encode call) and ``gradient_checkpointing``. They change
what a step costs, not what it computes (up to floating-point summation order). ``sd15``: ``ti``
micro-batches of 8 rows (a step is ``batch_size`` x every class: 800 rows on CUB), ``lora_ti`` its 2
rows at once, 4 images per VAE call, checkpointing on (DA-Fusion trains with it, METHODS_SPEC §1.5);
``embedded`` / ``tiny``: all rows at once, 32 images per VAE call, no checkpointing -- what the loops
did before these keys existed, which is also what a recipe without them gets (:data:`MEMORY_DEFAULTS`).
A suite refines any key per kind with a ``[concepts.ti]`` / ``[concepts.lora_ti]`` table.

Unknown recipe keys are refused with the valid keys named (:func:`validate_recipe`).

How the ``embedded`` recipes were chosen (toybirds 5-shot seed 0: the training part of 96 images,
24 classes; 1 torch thread on a shared 2-core machine, seconds include loading; fidelity = share of
images generated with prompt ``a photo of a <token> bird`` -- 25 DPM-Solver++ steps, CFG 7.5, 64 px
-- that the world's oracle assigns to the prompted class; n = 288 images (12 per class) unless marked
n = 96). The vanilla model with plain-name prompts ``a photo of a {name} bird`` scores 8.0 % (n = 288;
9.4 % n = 96); the committed world's VAE keeps only 41 % of the species, which caps every number here.

=========  ======  =============================  =========  =====================================
kind       steps   lr                             seconds    fidelity
=========  ======  =============================  =========  =====================================
lora_ti    100     1e-3 LoRA / 1e-2 tokens, b 8   28         18.8 % (n = 96)
lora_ti    250     same                           68         **18.1 %** (18.8 % n = 96)
lora_ti    500     same                           173        12.2 % (12.5 % n = 96)
lora_ti    1000    same                           365        14.2 % (16.7 % n = 96)
lora_ti    1500    same                           484        14.9 % (20.8 % n = 96)
lora_ti    250     1e-4 / 1e-3, b 8               78         14.6 % (n = 96)
lora_ti    500     1e-4 / 1e-3                    176        10.4 % (n = 96)
lora_ti    1000    1e-4 / 1e-3                    387        15.6 % (n = 96)
lora_ti    1500    1e-4 / 1e-3                    599        17.7 % (n = 96)
ti         25      1e-2, 4 images/class/step      ~45        11.5 % (7.3 % n = 96)
ti         50      same                           91         13.2 % (7.3 % n = 96)
ti         100     same                           160        **14.2 %** (12.5 % n = 96)
ti         150     same                           223        11.5 % (13.5 % n = 96)
ti         200     same                           285        13.5 % (n = 96)
=========  ======  =============================  =========  =====================================

Both kinds about double the vanilla model's plain-name fidelity; beyond that the curves are flat
within the evaluation's noise (± 2-4 points), so the cheapest step count at the top of each curve
was chosen: ``lora_ti`` 250 steps, ``ti`` 100 steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from augbench.contract import ConfigError

__all__ = ["CONCEPT_KINDS", "DM_INIT_TOKEN_ID", "IMAGENET_TEMPLATES_SMALL", "MEMORY_DEFAULTS", "RECIPES",
           "concept_recipe", "validate_recipe"]

CONCEPT_KINDS = ("ti", "lora_ti")

# CLIP BPE id 42170 is the sub-word "ktn": Diff-Mix initialises every class token from it [DM train_lora.py:60].
DM_INIT_TOKEN_ID = 42170

# DA-Fusion / diffusers textual-inversion captions [DAF fine_tune.py:276-304]; "{}" is the class token.
IMAGENET_TEMPLATES_SMALL = (
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}", "a cropped photo of a {}",
    "a photo of the {}", "a good photo of the {}", "a photo of one {}", "a close-up photo of the {}",
    "a rendition of the {}", "a photo of the clean {}", "a rendition of a {}", "a photo of a nice {}",
    "a good photo of a {}", "a photo of the nice {}", "a photo of the small {}", "a photo of the weird {}",
    "a photo of the large {}", "a photo of a cool {}", "a photo of a small {}",
)

# Memory keys (both kinds): cost, not result. A recipe without them gets these values -- the loops'
# behaviour before the keys existed -- so older complete recipes stay valid and train as they did.
MEMORY_DEFAULTS: dict[str, Any] = {"micro_batch": 0, "encode_batch": 32, "gradient_checkpointing": False}
_MEMORY_KEYS = {
    "encode_batch": "images per VAE encode call (posterior moments, per-step crops)",
    "gradient_checkpointing": "recompute UNet activations in the backward instead of keeping them (ti: the text "
                              "encoder's too); same gradients, less memory",
}

# Every key a recipe of the kind may hold, with its meaning (the defaults are the sd15 values).
_LORA_TI_KEYS = {
    "steps": "optimiser steps",
    "batch_size": "images per step",
    "resolution": "training resolution in pixels (resize shorter side, random crop)",
    "rank": "LoRA rank (alpha = rank: no alpha scaling, as Diff-Mix's LoRAAttnProcessor)",
    "lr": "LoRA learning rate",
    "ti_lr": "class-token embedding learning rate",
    "weight_decay": "AdamW weight decay (both groups)",
    "grad_clip": "gradient-norm clipping on the LoRA parameters only",
    "init_token_id": "CLIP token id every class token is initialised from",
    "caption": "training caption; {token} and {meta} are filled in",
    "flip": "random horizontal flip",
    "sampler": "auto (class-balanced 1/N_c when class counts differ, else uniform), balanced or uniform",
    "mixed_precision": "no or fp16 (on CUDA: fp16 autocast, frozen weights fp16, trained parameters fp32)",
    "seed": "seed every generator of the build derives from",
    "micro_batch": "rows per forward + backward (gradients accumulated over the step's batch); 0 = the whole batch",
    **_MEMORY_KEYS,
}
_TI_KEYS = {
    "steps": "optimiser steps per class",
    "batch_size": "images of the class per step",
    "resolution": "training resolution in pixels",
    "lr": "token learning rate (already multiplied by the batch size: DA-Fusion's --scale_lr)",
    "weight_decay": "AdamW weight decay",
    "init_word": "word every class token is initialised from",
    "templates": "imagenet_small (DA-Fusion's 27 captions) or a caption with {token} and {meta}",
    "flip": "random horizontal flip",
    "mixed_precision": "no or fp16 (on CUDA: fp16 autocast, frozen VAE and UNet fp16, the tokens fp32)",
    "seed": "seed every generator of the build derives from",
    "micro_batch": "rows per forward + backward (a step is batch_size x every class; gradients accumulated); "
                   "0 = every row of the step at once",
    **_MEMORY_KEYS,
}
RECIPE_KEYS: dict[str, dict[str, str]] = {"lora_ti": _LORA_TI_KEYS, "ti": _TI_KEYS}

_LORA_TI_SD15 = {
    "steps": 35_000, "batch_size": 2, "resolution": 512, "rank": 10, "lr": 5e-5, "ti_lr": 5e-5,
    "weight_decay": 1e-2, "grad_clip": 1.0, "init_token_id": DM_INIT_TOKEN_ID, "caption": "a photo of a {token} {meta}",
    "flip": True, "sampler": "auto", "mixed_precision": "fp16", "seed": 42,
    "micro_batch": 0, "encode_batch": 4, "gradient_checkpointing": True,
}
_TI_SD15 = {
    "steps": 1_000, "batch_size": 4, "resolution": 512, "lr": 5e-4 * 4, "weight_decay": 1e-2, "init_word": "the",
    "templates": "imagenet_small", "flip": True, "mixed_precision": "fp16", "seed": 0,
    "micro_batch": 8, "encode_batch": 4, "gradient_checkpointing": True,
}

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "lora_ti": {
        "sd15": _LORA_TI_SD15,
        # CPU recipe for the miniature world (64 px), chosen by oracle fidelity vs steps (the module docstring).
        "embedded": {**_LORA_TI_SD15, "steps": 250, "batch_size": 8, "resolution": 64, "lr": 1e-3, "ti_lr": 1e-2,
                     "mixed_precision": "no", **MEMORY_DEFAULTS},
        "tiny": {**_LORA_TI_SD15, "steps": 3, "batch_size": 2, "resolution": 32, "lr": 1e-3, "ti_lr": 1e-2,
                 "mixed_precision": "no", **MEMORY_DEFAULTS},
    },
    "ti": {
        "sd15": _TI_SD15,
        "embedded": {**_TI_SD15, "steps": 100, "batch_size": 4, "resolution": 64, "lr": 1e-2, "mixed_precision": "no",
                     **MEMORY_DEFAULTS},
        "tiny": {**_TI_SD15, "steps": 3, "batch_size": 2, "resolution": 32, "lr": 1e-2, "mixed_precision": "no",
                 **MEMORY_DEFAULTS},
    },
}


def _kind_check(kind: str) -> None:
    if kind not in RECIPES:
        raise ConfigError(f"unknown concept kind {kind!r}; expected one of {', '.join(CONCEPT_KINDS)}")


def validate_recipe(kind: str, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as a plain dict; an unknown or missing key raises ``ConfigError`` naming the valid keys.

    A memory key the recipe lacks takes its :data:`MEMORY_DEFAULTS` value (a recipe written before those
    keys trains as it did); a memory key of the wrong type or range is refused.
    """
    _kind_check(kind)
    keys = RECIPE_KEYS[kind]
    recipe = {**{k: v for k, v in MEMORY_DEFAULTS.items() if k not in recipe}, **recipe}
    unknown = sorted(set(recipe) - set(keys))
    if unknown:
        from augbench.plugins import did_you_mean

        hints = ", ".join(f"{k!r}{did_you_mean(k, sorted(keys))}" for k in unknown)
        raise ConfigError(f"{kind} recipe: unknown key(s) {hints}; valid keys: {', '.join(sorted(keys))}")
    missing = sorted(set(keys) - set(recipe))
    if missing:
        raise ConfigError(f"{kind} recipe: missing key(s) {', '.join(missing)}; a recipe holds {', '.join(sorted(keys))} "
                          f"(start from concept_recipe({kind!r}, profile))")
    _check_memory_keys(kind, recipe)
    return dict(recipe)


def _check_memory_keys(kind: str, recipe: Mapping[str, Any]) -> None:
    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{kind} recipe: {key} = {recipe[key]!r}; expected {expected} "
                           f"(set it in the suite's [concepts.{kind}] table)")

    for key, low in (("micro_batch", 0), ("encode_batch", 1)):
        value = recipe[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(key, f"an integer >= {low}" + (" (0 = all rows at once)" if low == 0 else ""))
    if not isinstance(recipe["gradient_checkpointing"], bool):
        raise bad("gradient_checkpointing", "true or false")


def concept_recipe(kind: str, profile: Any, **overrides: Any) -> dict[str, Any]:
    """The recipe a method puts in ``ArtifactSpec(kind, recipe)`` for ``profile``.

    Args:
        kind: ``ti`` or ``lora_ti``.
        profile: a ``Profile`` or a profile name (``sd15``, ``embedded``, ``tiny``). A profile whose
            ``extra`` holds ``concept_recipes = {kind: {...}}`` overrides the named recipe's keys.
        overrides: keys to change (checked against the kind's keys).

    Raises:
        ConfigError: unknown kind, unknown profile or unknown key.
    """
    _kind_check(kind)
    name = profile if isinstance(profile, str) else getattr(profile, "name", str(profile))
    if name not in RECIPES[kind]:
        raise ConfigError(f"no {kind} recipe for profile {name!r}; recipes exist for {', '.join(RECIPES[kind])} "
                          "(or pass a complete recipe in the ArtifactSpec)")
    extra = {} if isinstance(profile, str) else dict((getattr(profile, "extra", None) or {}).get("concept_recipes", {})
                                                      .get(kind, {}))
    return validate_recipe(kind, {**RECIPES[kind][name], **extra, **overrides})


def concept_spec(kind: str, profile: Any, steps: int | None = None, **spec: Any):
    """``ArtifactSpec(kind, concept_recipe(kind, profile, steps=...))``: the concept artifact a method
    declares, with its training steps overridden when ``steps`` is given (``spec``: further fields)."""
    from augbench.contract import ArtifactSpec

    return ArtifactSpec(kind, concept_recipe(kind, profile, **({"steps": steps} if steps else {})), **spec)

