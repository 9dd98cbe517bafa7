"""DiffuseMix: label-preserving augmentation by instruction editing, half-and-half concatenation and fractal
blending (Islam, Zaheer, Mahmood, Nandakumar, CVPR 2024; code ``khawar-islam/diffuseMix`` at ``e58418d``).

Per real image ``I`` of class ``y`` and conditional prompt ``p``, three steps (the paper's abstract: generation with
"bespoke conditional prompts", concatenation of "a partial natural image and its generated counterpart", blending
of "a randomly selected structural pattern from a set of fractal images"; the paper's §3 text was not at hand when
this module was written, so its formulation is taken from the abstract and from its US patent 12,657,783 B1's
abstract, and every value from the code):

1. **Generation** -- ``Î = InstructPix2Pix(I, p)``: the repo's ``StableDiffusionInstructPix2PixPipeline``
   (``timbrooks/instruct-pix2pix``, fp16, no safety checker) with an Euler-ancestral scheduler
   (``augment/handler.py:10-13``), the source resized to 256 px (``handler.py:16``), text guidance 4
   (``main.py:36``), image guidance and steps left at diffusers' defaults, 1.5 and 100 (``handler.py:17``), one
   image per (image, prompt) (``main.py:35`` ``num_images=1``). Prompts: the README's list ``Autumn, snowy,
   watercolor art, sunset, rainbow, aurora, mosaic, ukiyo-e, a sketch with crayon`` ("start from two prompts
   then increase"; its example command uses ``sunset,Autumn``), passed on the command line (``main.py:12, 18``).
2. **Concatenation** -- ``H = (1 - M) ⊙ I + M ⊙ Î`` with ``M`` a half mask, horizontal or vertical chosen
   uniformly per image (``augment/utils.py:27`` ``random.choice(['horizontal', 'vertical'])``). The code's mask is
   not binary: it ramps linearly from 0 to 1 over 20 px across the middle (``utils.py:25-41``, ``blend_width=20``
   at 256 px) and always keeps the original in the left / top half. The paper's formulation is a binary
   pixel-wise mask (the patent: pixels of value zero or one, at least one entire row or column zero; original
   times the mask, generated times its complement -- its mask is ``1 - M`` here). DISAGREE: ramp (code) vs
   binary (paper): ``mask = "ramp"`` (HARNESS default, the code that produced the published numbers) or
   ``"binary"`` (preset ``paper``). Either way exactly half of the image's weight is the original
   (:func:`half_mask`); ``original_side = "random"`` (HARNESS option) also puts it right / bottom.
3. **Fractal blending** -- ``A = (1 - λ) H + λ F`` with ``λ = 0.2`` (``utils.py:14-22``, ``alpha=0.20``; the
   patent names a "blending factor", no value) and ``F`` drawn uniformly from a fractal folder
   (``diffuseMix.py:68``, resized to the image size, ``utils.py:11, 15``). The repo downloads that folder (README);
   the harness renders a fixed bank of ``fractal_count`` fractals from iterated function systems, FractalDB-style
   (:mod:`augbench.diffusion.fractals`), seeded by ``fractal_seed`` (a fixed bank, like the folder, not the run seed).

The label is the source image's class, hard (``diffuseMix.py:40, 76``: the folder name). Every real image gives
``len(prompts) x images_per_prompt`` augmented images (9 with the README's list: the cost users report,
khawar-islam/diffuseMix#6, "DiffuseMix expands data 10x", USER_NEEDS).

HARNESS choices and smaller disagreements:

* resolution: the profile's (sd15 512, embedded 64), like every other method; the repo edits, concatenates and
  blends at 256 px (``image_size = 256`` reproduces it on sd15);
* the repo truncates floats to uint8 after the concatenation and after the blend (``astype(np.uint8)``,
  ``utils.py:20, 47``); here one rounding at the end;
* the repo drops an edit that comes out black (``is_black_image``, ``diffuseMix.py:63``), which only the safety
  checker it disables produces; not reproduced (the contract returns one image per request);
* the randomness the repo draws from Python's global ``random`` (mask orientation, fractal) is drawn per request
  from a generator seeded with the request seed, at plan time, and recorded in the request's ``params``.

Embedded profile: the world's instruction editor (``augbench.world.build.editor``, an InstructPix2Pix-format model
fine-tuned from the world's UNet on renderer-made edit pairs whose instructions include the README's nine prompts)
under ``benchmark/world/weights/editor``; without it the method stops with one line naming the build command.

Training integration (METHODS_SPEC §4): the repo writes an offline augmented dataset (``augmented_images/``,
``main.py:42-43``) and releases no training code, so the harness trains on the real and augmented sets together
(``concat``, hard labels: DiffDA-Eval's full-concat); ``own_edits`` (each real image swapped with p = 0.5 for one of
its own augmentations) or ``same_class`` are a suite override away.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

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
from augbench.run.seeding import derive_seed, make_generator

if TYPE_CHECKING:
    from augbench.data.core import Subset
    from augbench.run.profiles import Profile

__all__ = ["README_PROMPTS", "DiffuseMix", "DiffuseMixConfig", "concatenate", "fractal_blend", "half_mask"]

#: the README's "List of Prompts" (khawar-islam/diffuseMix README.md)
README_PROMPTS = ("Autumn", "snowy", "watercolor art", "sunset", "rainbow", "aurora", "mosaic", "ukiyo-e",
                  "a sketch with crayon")
ORIENTATIONS = ("horizontal", "vertical")


# --- the two image operations (pure functions of their arguments) ------------------------------------------------


def half_mask(height: int, width: int, orientation: str, *, ramp: float = 0.0, original_first: bool = True) -> np.ndarray:
    """The weight ``M`` of the edited image in ``H = (1 - M) ⊙ I + M ⊙ Î``, float ``[height, width]`` in [0, 1].

    ``horizontal`` splits left | right (the code's ``np.hstack`` branch), ``vertical`` top / bottom; with
    ``original_first`` the original keeps the left / top half (the code's only layout). ``ramp`` is the width of
    the linear transition as a fraction of the side (the code's 20 px of 256: ``20 / 256``; 0 = binary, the
    paper's). The transition is centred on the middle and evaluated at pixel centres, so ``M(u) + M(1 - u) = 1``:
    the mask's mean is exactly 1/2 at every size (a binary mask of an odd side gives its middle line 1/2).
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"ramp is a fraction of the image side in [0, 1], got {ramp}")
    n = width if orientation == "horizontal" else height
    u = (np.arange(n) + 0.5) / n
    if ramp > 0:
        line = np.clip((u - 0.5) / ramp + 0.5, 0.0, 1.0)
    else:
        line = np.where(np.isclose(u, 0.5), 0.5, (u > 0.5).astype(np.float64))
    if not original_first:
        line = 1.0 - line
    return np.broadcast_to(line[None, :] if orientation == "horizontal" else line[:, None], (height, width)).copy()


def concatenate(original: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(1 - M) ⊙ I + M ⊙ Î`` in float (paper §3 "Concatenation"; ``utils.py:46``); images ``[H, W, 3]``."""
    if original.shape != edited.shape or original.shape[:2] != mask.shape:
        raise ValueError(f"concatenation needs equal sizes: original {original.shape}, edited {edited.shape}, "
                         f"mask {mask.shape}")
    m = mask[..., None]
    return (1.0 - m) * original.astype(np.float64) + m * edited.astype(np.float64)


def fractal_blend(hybrid: np.ndarray, fractal: np.ndarray, lam: float) -> np.ndarray:
    """``(1 - λ) H + λ F`` in float (paper §3 "Fractal blending"; ``utils.py:19``)."""
    if hybrid.shape != fractal.shape:
        raise ValueError(f"the fractal {fractal.shape} must have the hybrid image's size {hybrid.shape}")
    return (1.0 - lam) * np.asarray(hybrid, dtype=np.float64) + lam * fractal.astype(np.float64)


@functools.lru_cache(maxsize=256)
def _fractal(bank_seed: int, index: int, size: int) -> np.ndarray:
    from augbench.diffusion.fractals import ifs_fractal

    image = ifs_fractal(derive_seed(bank_seed, "fractal-bank", index), size)  # = fractal_bank(bank_seed, ..)[index]
    image.setflags(write=False)
    return image


# --- the method --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffuseMixConfig(MethodConfig):
    prompts: tuple[str, ...] = param(README_PROMPTS, "conditional prompts: every real image is edited once per prompt",
                                     paper="README 'List of Prompts' (9); README example: sunset, Autumn")
    images_per_prompt: int = param(1, "edits per (real image, prompt)", paper="main.py:35 num_images=1")
    num_inference_steps: int = param(100, "Euler-ancestral steps of the editor",
                                     paper="repo: diffusers' default 100 (handler.py:17 passes none)")
    guidance_scale: float = param(4.0, "text guidance scale s_T", paper="main.py:36 guidance_scale=4")
    image_guidance_scale: float = param(1.5, "image guidance scale s_I",
                                        paper="repo: diffusers' default 1.5 (handler.py:17 passes none)")
    negative_prompt: str = param("", "unconditional text of the guidance", paper='"" (diffusers default)')
    image_size: int | None = param(None, "side the source is resized to; edit, concatenation and blend happen at it "
                                   "(None: the profile's)", paper="repo: 256 (handler.py:16, diffuseMix.py:43)")
    mask: str = param("ramp", "concatenation mask: the code's linear ramp across the middle, or the paper's binary "
                      "half", paper="code: ramp of 20 px at 256 (utils.py:25-41); paper: binary", choices=("ramp", "binary"))
    ramp_width: float = param(20 / 256, "the ramp's width as a fraction of the side", paper="utils.py:25 blend_width=20")
    original_side: str = param("first", "the half the original keeps: left / top (the code) or either, at random",
                               paper="code: first (utils.py:29-41)", choices=("first", "random"))
    fractal_lambda: float = param(0.2, "fractal blending ratio λ: A = (1 - λ) H + λ F",
                                  paper="utils.py:14 alpha=0.20")
    fractal_count: int = param(1000, "fractals in the bank the blend draws from uniformly",
                               paper="repo: its downloaded fractal folder (README)")
    fractal_seed: int = param(0, "seed of the fractal bank (fixed across runs, like the repo's folder)")

    def validate(self) -> None:
        super().validate()
        if not self.prompts or any(not isinstance(p, str) or not p.strip() for p in self.prompts):
            raise ConfigError(f"prompts must be non-empty strings, got {list(self.prompts)!r}")
        for name in ("images_per_prompt", "num_inference_steps", "fractal_count"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.fractal_lambda <= 1.0:
            raise ConfigError(f"fractal_lambda is a blending ratio in [0, 1], got {self.fractal_lambda}")
        if not 0.0 < self.ramp_width <= 1.0:
            raise ConfigError(f"ramp_width is a fraction of the side in (0, 1], got {self.ramp_width}")


class DiffuseMix(OfflineMethod):
    """InstructPix2Pix edits of each real image, half-and-half with the original, blended with a fractal."""

    family: ClassVar[str] = "diffusemix"
    Config: ClassVar[type[MethodConfig]] = DiffuseMixConfig
    presets: ClassVar[dict] = {
        "paper": {"mask": "binary"},
        "two_prompts": {"prompts": ("sunset", "Autumn")},
    }
    # the tiny test editor samples 2 steps; a handful of fractals keeps the contract tests fast
    contract_test_params: ClassVar[dict] = {"num_inference_steps": 2, "fractal_count": 3}
    card: ClassVar[MethodCard] = MethodCard(
        summary="DiffuseMix: InstructPix2Pix edits with fixed prompts, concatenated half-and-half with the original "
                "and blended with a fractal",
        changes="adds len(prompts) augmented images of every real image, same class",
        labels="hard: the source image's class",
        cost="per image: steps x 3 UNet branches (text + image guidance in one call), one VAE encode and decode; a "
             "fractal render per bank entry (cached)",
        references=("Islam et al., CVPR 2024, §3", "khawar-islam/diffuseMix augment/", "Brooks et al., CVPR 2023"),
        training=TrainingIntegration(replacement_mode="concat", labels="hard"),
    )

    @staticmethod
    def contract_test_profile(profile: Profile) -> Profile:
        """The contract tests' profile (``augbench.testing``): the tiny test profile plus a tiny random
        InstructPix2Pix pipeline built from configs (``cached_tiny_instruct_pipeline``)."""
        from augbench.diffusion.instruct import cached_tiny_instruct_pipeline

        return dataclasses.replace(profile, instruct_pipeline=str(cached_tiny_instruct_pipeline()))

    def required_models(self, profile: Profile) -> dict[str, str]:
        """The profile's InstructPix2Pix pipeline (role ``instruct_pix2pix``); no Stable Diffusion pipeline."""
        from augbench.diffusion.instruct import ROLE, instruct_location

        return {ROLE: instruct_location(profile)}

    def setup(self, subset: Subset, ctx: MethodContext) -> None:
        from augbench.diffusion.instruct import check_instruct_pipeline

        check_instruct_pipeline(ctx.profile)

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        """``len(prompts) x images_per_prompt`` requests per real image, in subset order (a budget cycles over
        them); each request's seed also draws its mask orientation, the original's side and its fractal."""
        cfg = self.config
        ids, labels = list(subset.image_ids), list(subset.labels)
        per_image = len(cfg.prompts) * cfg.images_per_prompt
        total = int(budget) if budget is not None else per_image * len(ids)
        requests = []
        for index in range(total if ids else 0):
            k = (index // per_image) % len(ids)
            j = (index % per_image) // cfg.images_per_prompt
            request_seed = self.request_seed(seed, index)
            rng = np.random.default_rng(derive_seed(request_seed, "diffusemix-draws"))
            orientation = ORIENTATIONS[int(rng.integers(2))]
            original_first = cfg.original_side == "first" or bool(rng.integers(2))
            requests.append(GenerationRequest(
                index=index, seed=request_seed, target_class=labels[k], source_ids=(ids[k],), source_classes=(labels[k],),
                prompt=cfg.prompts[j],
                params={"prompt_index": j, "edit": index % cfg.images_per_prompt, "orientation": orientation,
                        "original_first": original_first, "fractal": int(rng.integers(cfg.fractal_count))}))
        return requests

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.diffusion.instruct import instruct_edit, load_warm_instruct
        from augbench.diffusion.sampling import load_sources

        if not requests:
            return []
        cfg = self.config
        warm = load_warm_instruct(ctx)
        size = int(cfg.image_size or ctx.profile.image_size)
        settings = {"num_inference_steps": cfg.num_inference_steps, "guidance_scale": cfg.guidance_scale,
                    "image_guidance_scale": cfg.image_guidance_scale, "image_size": size,
                    "scheduler": "euler_ancestral"}
        out: list[SyntheticSample] = []
        for start in range(0, len(requests), ctx.batch_size):
            chunk = list(requests[start:start + ctx.batch_size])
            sources = load_sources(ctx, chunk)
            prompts = [self._prompt(r) for r in chunk]
            edits = instruct_edit(warm, sources, prompts, [make_generator(r.seed) for r in chunk],
                                  negative_prompt=cfg.negative_prompt, num_inference_steps=cfg.num_inference_steps,
                                  guidance_scale=cfg.guidance_scale, image_guidance_scale=cfg.image_guidance_scale,
                                  size=size)
            for r, source, edited, prompt in zip(chunk, sources, edits, prompts, strict=True):
                out.append(SyntheticSample(self.mix(source, edited, r), one_hot(r.target_class, ctx.num_classes),
                                           self.sample_provenance(r, prompt=prompt, sampler=settings,
                                                                  fractal_lambda=cfg.fractal_lambda, mask=cfg.mask)))
        return out

    def _prompt(self, request: GenerationRequest) -> str:
        return request.prompt or self.config.prompts[int(request.params["prompt_index"])]

    def mix(self, source: np.ndarray, edited: np.ndarray, request: GenerationRequest) -> np.ndarray:
        """Steps 2 and 3 for one request: the source resized to the edit's size (PIL bicubic, the repo's
        ``resize((256, 256))``), concatenated with the edit by the request's half mask, blended with its fractal;
        uint8 ``[size, size, 3]``."""
        from PIL import Image

        cfg, p = self.config, request.params
        size = edited.shape[0]
        original = np.asarray(Image.fromarray(np.asarray(source, dtype=np.uint8)).convert("RGB").resize(
            (edited.shape[1], size), Image.BICUBIC))
        mask = half_mask(size, edited.shape[1], p["orientation"], original_first=bool(p["original_first"]),
                         ramp=cfg.ramp_width if cfg.mask == "ramp" else 0.0)
        fractal = _fractal(int(cfg.fractal_seed), int(p["fractal"]), size)
        if fractal.shape != edited.shape:
            fractal = np.asarray(Image.fromarray(fractal).resize((edited.shape[1], size), Image.BICUBIC))
        blended = fractal_blend(concatenate(original, edited, mask), fractal, cfg.fractal_lambda)
        return np.clip(np.round(blended), 0, 255).astype(np.uint8)
