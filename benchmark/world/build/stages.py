"""A build's finished stages on disk: what identifies each stage (so ``--resume`` reuses only what a
recipe would compute the same way), the staging folder, and stages taken from a built world that a
recipe continues (``BuildConfig.init_from``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from augbench.run.store import write_json_atomic
from augbench.world.build.loops import Log, torch_save_atomic
from augbench.world.build.recipe import BuildConfig

# Which BuildConfig fields each stage reads (besides the shared corpus ones); the UNet also depends
# on the CLIP and VAE it is trained with, the instruction editor on all three (it is the UNet fine-tuned).
_STAGE_FIELDS = {
    "clip": ("clip_", "text_", "vision_", "projection_dim"),
    "vae": ("vae_",),
    "unet": ("unet_", "caption_dropout", "ema_decay"),
    "editor": ("editor_",),
}
_STAGE_FILES = {"clip": ("clip.json", "clip"), "vae": ("vae.pt", "vae.ckpt.pt"), "unet": ("unet.pt", "unet.ckpt.pt"),
                "editor": ("editor.pt", "editor.ckpt.pt")}


def weights_fingerprint(folder: Path) -> str:
    """sha256 over a built world's weight and config files (names and bytes, symlinks followed)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")
                       and p.name not in ("build.json", "check.json")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def stage_identities(cfg: BuildConfig) -> dict[str, dict]:
    """Per stage, what must match for a resumed build to reuse it: the render version, the corpus
    (seed, size, image size), the device and the stage's own settings -- for the UNet also the CLIP's
    and the VAE's, for the editor also the UNet's and the edit transforms' version. Thread/process counts
    and the checkpoint interval change no stage's inputs."""
    from augbench.world.build.edits import EDIT_VERSION
    from augbench.world.render import RENDER_VERSION

    values = json.loads(json.dumps(asdict(cfg)))
    common = {"render_version": RENDER_VERSION,
              **{k: values[k] for k in ("seed", "image_size", "corpus_size", "device")}}
    if cfg.init_from:  # continuing a built world: its bytes, not its path, are the input
        common["init_sha256"] = weights_fingerprint(Path(cfg.init_from))
    own = {stage: {k: v for k, v in values.items() if k.startswith(prefixes)} for stage, prefixes in _STAGE_FIELDS.items()}
    unet = {**common, **own["clip"], **own["vae"], **own["unet"]}
    return {"clip": {**common, **own["clip"]}, "vae": {**common, **own["vae"]}, "unet": unet,
            "editor": {**unet, **own["editor"], "edit_version": EDIT_VERSION}}


def prepare_staging(staging: Path, cfg: BuildConfig, resume: bool, log: Log, kept: Path) -> Path:
    """The build's ``stages/`` folder: with ``resume``, the stages of an earlier build (interrupted in
    ``staging``, or finished and ``kept``) whose identity matches are reused, the rest removed."""
    stages, identities = staging / "stages", stage_identities(cfg)
    if resume and not stages.exists() and _matching_stages(kept / "identity.json", identities):
        stages.parent.mkdir(parents=True, exist_ok=True)
        kept.rename(stages)  # a kept build that shares nothing with this recipe stays where it is
    identity_file = stages / "identity.json"
    previous = json.loads(identity_file.read_text()) if resume and identity_file.exists() else {}
    reused = _matching_stages(identity_file, identities) if resume else []
    if not reused:
        log(f"{staging} holds a different recipe or render version: starting afresh" if previous
            else f"nothing to resume in {staging}: starting afresh" if resume else f"building in {staging}")
        shutil.rmtree(staging, ignore_errors=True)
        stages.mkdir(parents=True)
    else:
        log(f"resuming the build in {staging}: reusing {', '.join(reused)} "
            f"({', '.join(n for n in identities if n not in reused) or 'nothing'} redone)")
        for name in identities.keys() - set(reused):
            for file in _STAGE_FILES[name]:
                target = stages / file
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        for leftover in staging.iterdir():  # assembled outputs of the stopped build: remade below
            if leftover != stages:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    write_json_atomic(identity_file, identities)
    return stages


def _matching_stages(identity_file: Path, identities: dict[str, dict]) -> list[str]:
    """The stages whose recorded identity (in ``identity_file``, if any) equals this recipe's."""
    previous = json.loads(identity_file.read_text()) if identity_file.exists() else {}
    return [name for name in identities if previous.get(name) == identities[name]]


def load_stage(path: Path) -> dict | None:
    """A finished stage's stats saved at ``path``, marked as resumed; None if it is not there."""
    if not path.exists():
        return None
    return {**json.loads(path.read_text()), "resumed": True}


def staged_module(path: Path, module, train: Callable[[], tuple]) -> tuple:
    """``train()``'s (module, stats), saved at ``path``; or, when a stopped build left it there, loaded."""
    if path.exists():
        state = torch.load(path, weights_only=True)
        module.load_state_dict(state["model"])
        return module.eval(), {**json.loads(state["stats"]), "resumed": True}
    module, stats = train()
    torch_save_atomic({"model": module.state_dict(), "stats": json.dumps(stats)}, path)
    return module, stats


def inherited_module(module, folder: Path):
    """``module`` (built from this recipe's config) holding the fp32 weights of the diffusers folder
    ``folder``: a shape mismatch means the recipe and the world it continues disagree."""
    from safetensors.torch import load_file

    module.load_state_dict({k: v.float() for k, v in load_file(str(folder / "diffusion_pytorch_model.safetensors")).items()})
    return module


def inherited_stats(init: Path, stage: str) -> dict:
    """A stage taken from the world ``init`` continues: its recorded stats, marked as inherited."""
    record = json.loads((init / "build.json").read_text())
    return {**(record.get("stats", {}).get(stage) or {}), "inherited_from": str(init)}
