"""InstructPix2Pix (Brooks et al., CVPR 2023): the profile's instruction editor, loaded once, edits in batches.

DiffuseMix (Islam et al., CVPR 2024) edits every training image with InstructPix2Pix and its conditional prompts
(repo ``augment/handler.py``). What the repo does, which this module reproduces with diffusers' own pipeline:

* ``StableDiffusionInstructPix2PixPipeline.from_pretrained("timbrooks/instruct-pix2pix", torch_dtype=fp16,
  safety_checker=None)`` (``handler.py:10-12``; ``main.py:21``) -- here the profile's ``instruct_pipeline``
  (``AUGBENCH_<PROFILE>_INSTRUCT_PIPELINE``; sd15: ``timbrooks/instruct-pix2pix``, embedded: the world's editor);
* the scheduler replaced by ``EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)``
  (``handler.py:13``), as the InstructPix2Pix authors sample;
* the source image resized to 256 x 256 and passed with the prompt, ``guidance_scale`` (the text scale) 4
  (``main.py:36``), ``image_guidance_scale`` and ``num_inference_steps`` left at diffusers' defaults (1.5, 100),
  ``num_images_per_prompt=1`` (``handler.py:16-17``).

Guidance is InstructPix2Pix's two-scale rule (Brooks et al. §3.2.1, Eq. 3), computed by the pipeline in one UNet
call of three branches: ``eps(∅, ∅) + s_I (eps(c_I, ∅) - eps(∅, ∅)) + s_T (eps(c_I, c_T) - eps(c_I, ∅))``.
Prompt embeddings are cached per text (:class:`augbench.diffusion.pipelines.PromptEmbeddingCache`); initial
latents and Euler-ancestral noise come from one generator per request, so a batch gives the images its requests
give one at a time.

:func:`instruct_unet` is InstructPix2Pix's initialisation of its editor from a text-to-image UNet (§3.2: "we add
additional input channels to the first convolutional layer ... initialised to zero"); the embedded world's
editor (``augbench.world.build.editor``) and the tests' tiny editor are made with it.

Light at import time (no diffusers, no torch): ``augbench models check`` imports :data:`EDITOR_BUILD_COMMAND`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from augbench.contract import MethodContext
    from augbench.run.profiles import Profile

__all__ = [
    "EDITOR_BUILD_COMMAND",
    "ROLE",
    "WarmInstruct",
    "cached_tiny_instruct_pipeline",
    "check_instruct_pipeline",
    "instruct_edit",
    "instruct_key",
    "instruct_location",
    "instruct_unet",
    "load_warm_instruct",
    "save_tiny_instruct_pipeline",
]

#: the ``augbench models check`` role of the editor (``augbench.run.model_folders.PIPELINE_CLASSES``)
ROLE = "instruct_pix2pix"
#: builds the embedded world's editor next to its committed models (``augbench.world.build.editor``)
EDITOR_BUILD_COMMAND = "python -m augbench.world.build.editor"


def instruct_location(profile: Profile) -> str:
    """The profile's InstructPix2Pix pipeline (folder or hub id), ``""`` when it names none."""
    return str(getattr(profile, "instruct_pipeline", None) or "")


def instruct_key(profile: Profile) -> str:
    """The editor as cache keys should name it: its location, plus the hash of a locally built editor's
    ``build.json`` (the world's editor), so a rebuilt editor never reuses images of the old one."""
    from augbench.run.hashing import file_sha256

    location = instruct_location(profile)
    record = Path(location).expanduser() / "build.json"
    return f"{location}#{file_sha256(record)[:16]}" if location and record.is_file() else location


def _check_hint(profile: Profile) -> str:
    return f"`augbench models check --profile {profile.name}` lists every model"


def check_instruct_pipeline(profile: Profile) -> None:
    """Refuse, in one line, a profile whose editor is not there (cheap: file names and configs only).

    A hub id is not looked up here (the loader says whether it can be had); a local folder must be a complete
    ``StableDiffusionInstructPix2PixPipeline`` folder.

    Raises:
        ConfigError: the profile names no editor, or its folder is missing or incomplete; the message names the
            variable to set, the build command on the embedded world, and the check command.
    """
    from augbench.contract import ConfigError
    from augbench.run.model_folders import folder_problem, is_local

    location = instruct_location(profile)
    variable = profile.env_var("instruct_pipeline")
    if not location:
        raise ConfigError(f"DiffuseMix needs an InstructPix2Pix pipeline, and profile {profile.name!r} names none: "
                          f"set {variable}=DIR (a local copy of timbrooks/instruct-pix2pix). {_check_hint(profile)}")
    if not is_local(location):
        return
    problem = folder_problem(location, ROLE)
    if problem is None:
        return
    if profile.name == "embedded":
        raise ConfigError(f"DiffuseMix on the embedded world needs its instruction editor, which is not built "
                          f"({problem}): build it with `{EDITOR_BUILD_COMMAND}`, or point {variable} at one. "
                          f"{_check_hint(profile)}")
    raise ConfigError(f"DiffuseMix's InstructPix2Pix pipeline is not usable ({problem}): point {variable} at a "
                      f"complete local copy of timbrooks/instruct-pix2pix. {_check_hint(profile)}")


@dataclass
class WarmInstruct:
    """A loaded InstructPix2Pix pipeline and its prompt-embedding cache (one per process and profile)."""

    pipe: Any
    key: tuple
    embeddings: Any = field(init=False)

    def __post_init__(self) -> None:
        from diffusers import StableDiffusionPipeline

        from augbench.diffusion.pipelines import PromptEmbeddingCache

        # the text half of a StableDiffusionPipeline over the same modules: its ``encode_prompt`` is the one the
        # other methods' embeddings come from (the InstructPix2Pix pipeline has only a private one)
        parts = self.pipe.components
        text_view = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                            tokenizer=parts["tokenizer"], unet=parts["unet"],
                                            scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None,
                                            requires_safety_checker=False)
        self.embeddings = PromptEmbeddingCache(text_view)


def _load(profile: Profile, device: str, dtype: torch.dtype):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    from augbench.diffusion.pipelines import _DTYPE_KW, ModelLoadError, ready_for_sampling
    from augbench.diffusion.schedulers import scheduler_from_config

    location = instruct_location(profile)
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            location, local_files_only=profile.local_files_only, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, **{_DTYPE_KW: dtype})
    except (OSError, ValueError) as exc:
        cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]
        online = "downloads are off (local_files_only)" if profile.local_files_only else "it could not be downloaded"
        raise ModelLoadError(
            f"cannot load DiffuseMix's InstructPix2Pix pipeline {location!r} (profile {profile.name!r}): {online} or "
            f"it is incomplete; point {profile.env_var('instruct_pipeline')} at a local copy of "
            f"timbrooks/instruct-pix2pix (cause: {cause.rstrip('.')}). {_check_hint(profile)}") from exc
    pipe.scheduler = scheduler_from_config(EulerAncestralDiscreteScheduler, pipe.scheduler.config)
    return ready_for_sampling(pipe, device)


def load_warm_instruct(ctx: MethodContext) -> WarmInstruct:
    """The process's warm InstructPix2Pix pipeline for ``ctx.profile`` (checked, then loaded once per key)."""
    from augbench.diffusion.pipelines import torch_dtype

    profile = ctx.profile
    check_instruct_pipeline(profile)
    dtype = torch_dtype(profile.dtype, ctx.device)
    key = ("instruct_pix2pix", instruct_key(profile), str(dtype), str(ctx.device))
    return ctx.pipelines.get(key, lambda: WarmInstruct(_load(profile, ctx.device, dtype), key))


def instruct_edit(warm: WarmInstruct, images: Sequence[np.ndarray], prompts: Sequence[str], generators: Sequence[Any],
                  *, negative_prompt: str = "", num_inference_steps: int, guidance_scale: float,
                  image_guidance_scale: float, size: int) -> list[np.ndarray]:
    """Edit ``images`` (uint8 ``[H, W, 3]``) with their ``prompts``; uint8 ``[size, size, 3]`` edits.

    Each source is stretched to ``size x size`` (PIL bicubic: the repo's ``Image.resize((256, 256))``, whose default
    filter it is, ``handler.py:16``); the
    pipeline runs with a fresh Euler-ancestral scheduler per call (the warm one is never stepped, so calls do not
    share scheduler state), the cached prompt embeddings, and one generator per image.
    """
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    from augbench.diffusion.pipelines import to_uint8

    n = len(images)
    if len(prompts) != n or len(generators) != n:
        raise ValueError(f"need one prompt and one generator per image: {n} images, {len(prompts)} prompts, "
                         f"{len(generators)} generators")
    if n == 0:
        return []
    warm.embeddings.get(list(dict.fromkeys([*prompts, negative_prompt])))
    components = warm.pipe.components
    scheduler = type(components["scheduler"]).from_config(components["scheduler"].config)
    pipe = StableDiffusionInstructPix2PixPipeline(**{**components, "scheduler": scheduler},
                                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    sources = [Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB").resize((size, size), Image.BICUBIC)
               for img in images]
    with torch.inference_mode():
        out = pipe(image=sources, prompt_embeds=warm.embeddings.get(list(prompts)),
                   negative_prompt_embeds=warm.embeddings.get([negative_prompt] * n), generator=list(generators),
                   num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale),
                   image_guidance_scale=float(image_guidance_scale), output_type="np", return_dict=False)
    return list(to_uint8(np.asarray(out[0])))


def instruct_unet(unet: Any) -> Any:
    """An InstructPix2Pix UNet from a text-to-image one: ``conv_in`` takes the image-conditioning latent too.

    InstructPix2Pix §3.2: the first convolution gets as many extra input channels as the latent has, initialised
    to zero, so the widened UNet starts out as the text-to-image model it came from (ignoring the image) and
    learns to use it. Returns a new UNet (``in_channels`` doubled in its config); ``unet`` is left as it is.
    """
    import copy

    import torch

    old = unet.conv_in
    wide = copy.deepcopy(unet)
    conv = torch.nn.Conv2d(2 * old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                           bias=old.bias is not None, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :old.in_channels] = old.weight
        if old.bias is not None:
            conv.bias.copy_(old.bias)
    wide.conv_in = conv
    wide.register_to_config(in_channels=2 * old.in_channels)
    return wide


# --- a tiny random editor for tests (as augbench.testing.tiny builds the tiny Stable Diffusion) ----------------------

_TINY_INSTRUCT_VERSION = "1"  # bump when save_tiny_instruct_pipeline changes


def save_tiny_instruct_pipeline(path: str | Path, seed: int = 0) -> Path:
    """A tiny random ``StableDiffusionInstructPix2PixPipeline`` saved to ``path`` (diffusers format, from configs).

    The tiny SD components of ``augbench.testing.tiny`` with the UNet widened by :func:`instruct_unet` to 8 input
    channels, whose extra weights are then drawn from a seeded generator (a trained editor reads the image latent,
    a zero-initialised one would not), and an Euler-ancestral scheduler; never downloaded.
    """
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    from augbench.testing.tiny import tiny_sd_components

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    parts = tiny_sd_components(seed)
    unet = instruct_unet(parts["unet"])
    with torch.no_grad():
        extra = unet.conv_in.weight[:, parts["unet"].config.in_channels:]
        extra.copy_(torch.randn(extra.shape, generator=torch.Generator().manual_seed(seed)) * 0.05)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(parts["scheduler"].config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def cached_tiny_instruct_pipeline(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """:func:`save_tiny_instruct_pipeline` into the tests' shared cache folder (built once, atomically)."""
    import diffusers

    from augbench.testing.tiny import _cached_folder

    return _cached_folder("tiny_instruct", f"v{_TINY_INSTRUCT_VERSION}-seed{seed}-d{diffusers.__version__}",
                          "model_index.json", lambda p: save_tiny_instruct_pipeline(p, seed), cache_dir)
