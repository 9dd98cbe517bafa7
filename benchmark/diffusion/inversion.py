"""Diff-II's inversion pool as an artifact kind, ``ddim_inversion`` (METHODS_SPEC §3.10.1).

Every training image of the cell's training part is stretched to the generation resolution with Lanczos
(aspect ratio not kept; Diff-II's ``image_size``, default the profile's: the pool's latents are the
starting points Diff-II denoises, so the two must agree; the size is in the recipe and so in the key),
VAE-encoded (posterior *mean* x scaling factor) and DDIM-inverted to ``x_T`` with diffusers'
``DDIMInverseScheduler`` (``augbench.diffusion.pipelines.ddim_invert``), guidance 1.0 (no CFG),
prompt ``a photo of a <class_i> [meta]`` with the ``lora_ti`` concepts loaded [DII get_inversion.py].
Images are inverted in batches of ``ctx.batch_size`` (classes mixed; each row has its class's prompt).

Files: ``inversions.safetensors`` (``latents``: float32 ``[N, C, h, w]``, rows in the training part's
order) and ``inversions.json`` (``image_ids``, ``labels``, the prompts, seconds per image). Read them
with :func:`load_inversion_pool`.

Dependency on the concepts: the recipe holds the ``lora_ti`` recipe (so changing it changes the key)
and ``"requires": ["lora_ti"]``, which ``augbench.run.artifacts.build_artifacts`` resolves to the built
``lora_ti`` artifact's key (so an imported or retrained checkpoint also gives a new pool) and exposes
that artifact to the builder in ``ctx.artifacts``. The recipe holds nothing Diff-II-preset specific,
so every preset that interpolates with the same concepts shares one pool.

Inversion steps per profile: ``sd15`` 200 (DII ``--inversion_step`` default); ``tiny`` 2 (tests);
``embedded`` 50, chosen by a short measurement on toybirds 5-shot seed 0 (the cell's training part, the
first image of each of the 24 classes, the world's model with the embedded ``lora_ti`` concepts, batch
24, 1 thread): invert with N steps, regenerate from ``x_T`` with DDIM (guidance 1, the same prompt) and
compare with the VAE reconstruction of the source (mean absolute error on [0, 255]; the VAE itself is
9.2 off the source). Diff-II regenerates with 25 steps, so that column decides:

=====  ==========  ====================  =====================  ===========
steps  s / image   MAE, regenerate 25    MAE, regenerate N      std of x_T
=====  ==========  ====================  =====================  ===========
25     0.27        3.76                  3.76                   0.79
50     0.55        **1.60**              2.00                   0.85
100    1.09        1.68                  1.05                   0.88
=====  ==========  ====================  =====================  ===========

50 steps are as good as 100 for 25-step regeneration at half the cost; 25 steps double the error.
(How: ``ddim_invert``, then ``denoise`` with Diff-II's DDIM scheduler at w = 1, against ``decode_latents``
of the posterior mean. The inverted latents are somewhat narrower than N(0, I), as DDIM inversions are.)
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["BUILTIN_KINDS", "INVERSION_KIND", "INVERSION_STEPS", "SIN_THETA_MIN", "InversionPool", "check_pool_size",
           "circle_point", "interpolate", "inversion_recipe", "inversion_spec", "lam_range", "lerp",
           "load_inversion_pool", "slerp", "theta_between"]

log = logging.getLogger(__name__)

INVERSION_KIND = "ddim_inversion"
KIND_VERSION = 1  # bump when the builder's output changes
LATENTS_FILE = "inversions.safetensors"
INDEX_FILE = "inversions.json"

# DDIM inversion steps per profile (module docstring: sd15 = DII's 200; embedded measured; tiny for tests)
INVERSION_STEPS = {"sd15": 200, "embedded": 50, "tiny": 2}

CONCEPT_PROMPT = "a photo of a {token} {meta}"  # DII get_inversion.py:90-100
PLAIN_PROMPT = "a photo of a {name} {meta}"  # the vanilla model (no concepts): class names


def inversion_recipe(profile: Any, concepts: str | None = "lora_ti", concept_recipe: Mapping[str, Any] | None = None,
                     *, steps: int | None = None, image_size: int | None = None) -> dict[str, Any]:
    """The recipe of a ``ddim_inversion`` spec for ``profile``.

    Args:
        profile: a ``Profile`` (its name picks the step count, its ``image_size`` the default resolution).
        concepts: the concept artifact slot loaded while inverting (``lora_ti``), or ``None`` for the
            vanilla model with plain class-name prompts.
        concept_recipe: that artifact's recipe (required with ``concepts``): part of this recipe, so
            the pool's key changes with it.
        steps: inversion steps (default: :data:`INVERSION_STEPS` of the profile, else 50).
        image_size: the resolution images are stretched to before inversion, which is the resolution Diff-II
            then generates at (``x_T`` is ``image_size / 8`` on a side for SD); ``None``: the profile's.
            Part of the recipe (``size``), so pools of different sizes never share a key.
    """
    from augbench.contract import ConfigError

    if concepts and concept_recipe is None:
        raise ConfigError(f"an inversion pool with concepts {concepts!r} needs that artifact's recipe")
    name = getattr(profile, "name", str(profile))
    n = int(steps if steps is not None else INVERSION_STEPS.get(name, 50))
    if n < 1:
        raise ConfigError(f"inversion steps must be >= 1, got {n}")
    size = int(image_size if image_size is not None else profile.image_size)
    if size < 8:
        raise ConfigError(f"inversion image_size must be >= 8 pixels, got {size}")
    return {
        "steps": n,
        "guidance_scale": 1.0,  # DII --condiction_scale default: CFG off
        "size": size,
        "prompt": CONCEPT_PROMPT if concepts else PLAIN_PROMPT,
        "concepts": concepts,
        "concept_recipe": dict(concept_recipe) if concepts else None,
        "requires": [concepts] if concepts else [],
    }


def inversion_spec(profile: Any, concepts: str | None = "lora_ti", concept_recipe: Mapping[str, Any] | None = None,
                   *, steps: int | None = None, image_size: int | None = None):
    """``ArtifactSpec("ddim_inversion", inversion_recipe(...))``; declare it after the concepts' spec."""
    from augbench.contract import ArtifactSpec

    return ArtifactSpec(INVERSION_KIND, inversion_recipe(profile, concepts, concept_recipe, steps=steps,
                                                         image_size=image_size))


@dataclass(frozen=True)
class InversionPool:
    """The inverted latents ``x_T`` of a training part, in its order.

    Attributes:
        latents: float32 ``[N, C, h, w]`` (CPU tensor).
        image_ids, labels: row ``i`` is the inversion of ``image_ids[i]`` (class ``labels[i]``).
    """

    latents: Any
    image_ids: tuple[str, ...]
    labels: tuple[int, ...]

    def class_rows(self, label: int) -> list[int]:
        """Rows of class ``label`` in pool order (DII's pairs follow the directory listing order)."""
        return [i for i, c in enumerate(self.labels) if c == label]

    def row_of(self, image_id: str) -> int:
        return self.image_ids.index(image_id)


def load_inversion_pool(artifact: Any) -> InversionPool:
    """The pool stored in a ``ddim_inversion`` artifact (``augbench.run.artifacts.Artifact`` or its folder)."""
    from safetensors.torch import load_file

    folder = Path(getattr(artifact, "folder", artifact))
    index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    latents = load_file(str(folder / LATENTS_FILE))["latents"]
    if latents.shape[0] != len(index["image_ids"]):
        raise ValueError(f"{folder}: {latents.shape[0]} latents for {len(index['image_ids'])} image ids")
    return InversionPool(latents, tuple(index["image_ids"]), tuple(int(c) for c in index["labels"]))


def build_inversion_pool(spec: Any, train_part: Any, ctx: Any, folder: Path) -> None:
    """Invert every image of ``train_part`` (METHODS_SPEC §3.10.1) into ``folder``."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from augbench.data.image_cache import load_rgb
    from augbench.diffusion import pipelines as diffusion

    recipe = spec.recipe
    card = ctx.require_card()
    if ctx.source is None:
        raise ValueError("the inversion pool needs the dataset's images: build MethodContext(source=...)")
    concepts = recipe.get("concepts")
    if concepts:
        if concepts not in ctx.artifacts:
            raise ValueError(f"the inversion pool needs the {concepts!r} artifact built first (declare it before "
                             f"{INVERSION_KIND} in the method's artifacts())")
        from augbench.diffusion.concepts import concept_prompt

        warm = diffusion.load_warm_pipeline(ctx, artifact=ctx.artifacts[concepts])

        def prompt(label: int) -> str:
            return concept_prompt(warm, card, label, recipe["prompt"])
    else:
        warm = diffusion.load_warm_pipeline(ctx)

        def prompt(label: int) -> str:
            return card.prompt(label, recipe["prompt"])

    ids, labels = list(train_part.image_ids), list(train_part.labels)
    prompts = [prompt(c) for c in labels]
    t = time.time()
    chunks = []
    for start in range(0, len(ids), ctx.batch_size):
        rows = slice(start, start + ctx.batch_size)
        images = [np.asarray(load_rgb(ctx.source, i)) for i in ids[rows]]
        chunks.append(diffusion.ddim_invert(
            warm.pipe, images, warm.embeddings.get(prompts[rows]), num_inference_steps=int(recipe["steps"]),
            size=int(recipe["size"]), guidance_scale=float(recipe["guidance_scale"])).float().cpu())
        log.info("%s: %d/%d images inverted", INVERSION_KIND, min(start + ctx.batch_size, len(ids)), len(ids))
    seconds = time.time() - t
    latents = torch.cat(chunks) if chunks else torch.zeros(0)
    save_file({"latents": latents.contiguous()}, str(folder / LATENTS_FILE))
    index = {"image_ids": ids, "labels": labels, "prompts": dict(sorted({c: p for c, p in zip(labels, prompts)}.items())),
             "seconds": seconds, "seconds_per_image": seconds / max(len(ids), 1), "steps": int(recipe["steps"]),
             "size": int(recipe["size"])}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# --- points between two inversions (METHODS_SPEC §3.10.2), pure functions Diff-II samples with -------------

SIN_THETA_MIN = 1e-6  # below it Eq.5/6 divide by ~0 (identical or opposite inversions, §3.10.2)


def theta_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """``arccos(<a, b> / (|a| |b|))`` over the fully flattened latents (float64), in [0, pi]."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = float((a64 @ b64) / (a64.norm() * b64.norm()))
    return math.acos(min(1.0, max(-1.0, cos)))


def circle_point(a: torch.Tensor, b: torch.Tensor, lam: float, theta: float) -> torch.Tensor:
    """P2 Eq.5: ``[sin((1 + lam) theta) a - sin(lam theta) b] / sin theta`` (float64 math, ``a``'s dtype)."""
    s = math.sin(theta)
    z = (math.sin((1.0 + lam) * theta) * a.double() - math.sin(lam * theta) * b.double()) / s
    return z.to(a.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, mu: float, theta: float) -> torch.Tensor:
    """P2 Eq.6, spherical interpolation: ``[sin((1 - mu) theta) a + sin(mu theta) b] / sin theta``.

    Equals ``circle_point(a, b, 2 pi / theta - mu, theta)``: the short arc of the circle of Eq.5.
    """
    s = math.sin(theta)
    return ((math.sin((1.0 - mu) * theta) * a.double() + math.sin(mu * theta) * b.double()) / s).to(a.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, mu: float) -> torch.Tensor:
    """Linear interpolation ``(1 - mu) a + mu b`` (P2 Tab.4 "LI")."""
    return ((1.0 - mu) * a.double() + mu * b.double()).to(a.dtype)


def lam_range(kind: str, theta: float) -> float:
    """Upper end of the uniform ``lam`` range of each variant (lower end 0).

    ``circle``: ``2 pi / theta`` (P2 Eq.5, the whole circle); ``se``: ``2 pi / theta - 1`` (Eq.7, the long
    arc from ``I_a`` away from ``I_b`` to ``I_b``); ``li``, ``si``: 1 (HARNESS: uniform over each
    variant's range, §3.10.2).
    """
    if kind == "circle":
        return 2.0 * math.pi / theta
    if kind == "se":
        return 2.0 * math.pi / theta - 1.0
    if kind in ("li", "si"):
        return 1.0
    from augbench.contract import ConfigError

    raise ConfigError(f"no lam range for interpolation {kind!r}")


def interpolate(kind: str, a: torch.Tensor, b: torch.Tensor, u: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """The initial latent of one synthetic image from the pair ``(a, b)`` and a uniform draw ``u`` in [0, 1).

    ``lam = u * lam_range(kind, theta)``, so presets that share ``u`` are paired. Returns ``(Z, info)``
    with ``info = {"kind", "theta", "lam", "fallback"}``; ``fallback`` is true when ``sin theta < 1e-6``
    made a spherical variant fall back to ``a``.
    """
    theta = theta_between(a, b)
    if kind == "li":
        lam = u * lam_range(kind, theta)
        return lerp(a, b, lam), {"kind": kind, "theta": theta, "lam": lam, "fallback": False}
    if math.sin(theta) < SIN_THETA_MIN:
        return a.clone(), {"kind": kind, "theta": theta, "lam": 0.0, "fallback": True}
    lam = u * lam_range(kind, theta)
    z = slerp(a, b, lam, theta) if kind == "si" else circle_point(a, b, lam, theta)
    return z, {"kind": kind, "theta": theta, "lam": lam, "fallback": False}


def check_pool_size(pool: Any, pipe: Any, size: int) -> None:
    """The pool's latents must be those of ``size`` pixels (an imported pool may hold another size).

    Raises:
        ConfigError: naming both sizes and the fix.
    """
    from augbench.contract import ConfigError

    if not len(pool.image_ids):
        return
    side = size // pipe.vae_scale_factor
    got = tuple(pool.latents.shape[-2:])
    if got != (side, side):
        raise ConfigError(f"diff_ii: the inversion pool holds {got[0]}x{got[1]} latents "
                          f"({got[0] * pipe.vae_scale_factor} px) but generation runs at {size} px ({side}x{side}); "
                          "rebuild the ddim_inversion artifact at the method's image_size (drop its import path)")


# name -> (builder, version, summary); registered by augbench.run.artifacts on first use
BUILTIN_KINDS: dict[str, tuple[Any, int, str]] = {
    INVERSION_KIND: (build_inversion_pool, KIND_VERSION,
                     "Diff-II inversion pool: DDIM-inverted x_T of every training image (METHODS_SPEC §3.10.1)"),
}
