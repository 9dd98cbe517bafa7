"""What a finished build publishes: the diffusers pipeline folder, the CLIP text tower stored once,
``build.json`` (the recipe, each stage's stats, package versions, the machine) and the move of the
staged world over the output folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import torch

from augbench.run.records import versions
from augbench.world.build.loops import Log
from augbench.world.build.parallel import num_processes
from augbench.world.build.recipe import BuildConfig
from augbench.world.build.stages import weights_fingerprint
from augbench.world.build.unet import sd15_scheduler_config

BUILD_FORMAT = "augbench.world-build/1"


def save_pipeline(cfg: BuildConfig, vae, text_encoder, tokenizer, unet, folder: Path) -> None:
    """The trained parts as a diffusers ``StableDiffusionPipeline`` (fp16, safetensors) in ``folder``:
    DPM-Solver++ on SD1.5's schedule as the default scheduler, no safety checker."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    scheduler = DPMSolverMultistepScheduler(**{k: v for k, v in sd15_scheduler_config().items()
                                               if k in ("num_train_timesteps", "beta_start", "beta_end",
                                                        "beta_schedule", "steps_offset")},
                                            prediction_type=cfg.unet_prediction)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)


def share_text_tower(weights_dir: Path) -> None:
    """Store the CLIP text tower and tokenizer once, shared by ``clip/`` and ``sd/``.

    The pipeline's text encoder *is* the frozen CLIP text tower, and its token embedding
    (49,408 x hidden) dominates both checkpoints, so saving it twice would break the 25 MB budget
    for nothing. ``clip/`` is re-saved as a two-shard checkpoint (text tower | everything else,
    with the standard ``model.safetensors.index.json``) and ``sd/text_encoder/model.safetensors``
    and ``sd/tokenizer/*`` become relative symlinks into it. Both directories still load with
    plain ``from_pretrained(dir, local_files_only=True)`` and no unexpected-key warnings
    (transformers strips the ``text_model.`` prefix when a ``CLIPTextModel`` reads the shard).
    """
    from safetensors.torch import load_file, save_file

    clip_dir, sd_dir = weights_dir / "clip", weights_dir / "sd"
    state = load_file(str(clip_dir / "model.safetensors"))
    text = {k: v for k, v in state.items() if k.startswith("text_model.")}
    other = {k: v for k, v in state.items() if not k.startswith("text_model.")}
    shard_names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    save_file(text, str(clip_dir / shard_names[0]), metadata={"format": "pt"})
    save_file(other, str(clip_dir / shard_names[1]), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
             "weight_map": {k: shard_names[0] if k in text else shard_names[1] for k in sorted(state)}}
    (clip_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (clip_dir / "model.safetensors").unlink()

    links = {sd_dir / "text_encoder" / "model.safetensors": Path("../../clip") / shard_names[0]}
    for name in ("tokenizer.json", "tokenizer_config.json"):
        links[sd_dir / "tokenizer" / name] = Path("../../clip") / name
    for link, target in links.items():
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def build_record(cfg: BuildConfig, init: Path | None, stats: dict, scaling: float, resume: bool, t_start: float) -> dict:
    """``build.json``: the recipe, each stage's stats, what it continued, versions and the machine."""
    from augbench.world.render import RENDER_VERSION

    return {
        "format": BUILD_FORMAT,
        "config": asdict(cfg),
        "render_version": RENDER_VERSION,
        "stats": stats,
        "vae_scaling_factor": scaling,
        "init_from": ({"path": str(init), "sha256": weights_fingerprint(init),
                       "config": json.loads((init / "build.json").read_text()).get("config")} if init else None),
        # this process's wall time; stage "seconds" also cover earlier, interrupted runs' work
        "build_seconds": time.time() - t_start,
        "resumed": resume and any(stats[stage].get("resumed") for stage in ("clip", "vae", "unet")),
        "versions": world_versions(),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "threads": cfg.threads,
                    "processes": num_processes(cfg),
                    "device": cfg.device},
    }


def world_versions() -> dict[str, str]:
    """The run records' package versions (:func:`augbench.run.records.versions`) plus the two the
    world build needs beyond them: pillow (the renderer) and open_clip_torch (whose vocabulary the
    tokenizer is built from). Both are hard dependencies here: the build fails before this if one is
    missing, so no "not installed" fallback."""
    return {**versions(), **{name: version(name) for name in ("pillow", "open_clip_torch")}}


def cpu_model() -> str:
    """The CPU's model name: float kernels (oneDNN, MKL) differ between CPU types, so byte-identical
    rebuilds are only expected on the same kind of CPU with the same package versions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def publish(staging: Path, stages: Path, out_dir: Path, keep_stages: bool, log: Log) -> None:
    """Keep (or drop) the finished stages and move the staged world over ``out_dir``."""
    if keep_stages:
        kept = out_dir.with_name(out_dir.name + ".stages")
        shutil.rmtree(kept, ignore_errors=True)
        stages.rename(kept)
        log(f"finished stages kept in {kept} (reused by a later --resume)")
    else:
        shutil.rmtree(stages)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
