"""The embedded world's instruction editor: a tiny InstructPix2Pix fine-tuned from the world's UNet (for DiffuseMix).

DiffuseMix edits every training image with InstructPix2Pix (Brooks et al., CVPR 2023); the embedded world had no
instruction editor, so this stage makes one the way InstructPix2Pix was made from Stable Diffusion (§3.2):

* the world's trained UNet with its first convolution widened to take the source image's latent as well (``2 x 8``
  input channels: noisy latent + image latent), the new weights zero (:func:`augbench.diffusion.instruct.instruct_unet`),
  so training starts from the text-to-image model;
* fine-tuned on ``(source, instruction, edited)`` triplets that the renderer makes (:mod:`.edits`: the same bird with
  another background, season, light or style; the instructions include DiffuseMix's README prompts) with the
  epsilon / min-SNR loss the UNet was trained with; the target is a posterior sample of the edited image's latent,
  the condition the posterior mode of the source's (what ``StableDiffusionInstructPix2PixPipeline`` feeds at
  sampling time); the image latent alone, the instruction alone and both are dropped for ``editor_dropout`` of the
  samples each (§3.2.1: 5 %), so both guidance scales work; an EMA of the weights is kept, as for the UNet;
* saved as a diffusers ``StableDiffusionInstructPix2PixPipeline`` folder (``editor/``: ``model_index.json``, the
  widened ``unet/`` in fp16, an Euler-ancestral ``scheduler/`` as ``timbrooks/instruct-pix2pix`` ships) whose VAE,
  text encoder and tokenizer are relative links into ``sd/`` and ``clip/`` (frozen, stored once), with its own
  ``build.json`` (recipe, stats, the check below, versions): what ``augbench.diffusion.instruct`` loads.

Two ways to run it: as a stage of ``augbench world build`` (:func:`editor_stage`, on the staged ``sd/``), or on a
built world (:func:`build_editor`; ``python -m augbench.world.build.editor [--weights DIR] [--resume]``: the
committed world's recipe from its ``build.json``, :data:`~augbench.world.build.recipe.COMMITTED_EDITOR`'s steps).
Both checkpoint every ``checkpoint_every`` steps and resume; a build that changes nothing of the editor's inputs
reuses it. At the end the editor is checked on toybirds test images edited with the README prompts (the renderer's
edit of the same image is the reference; the oracle judges whether the species survives the edit).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from augbench.run.seeding import derive_seed, make_generator
from augbench.run.store import write_json_atomic
from augbench.world.build.loops import Log, LoopCheckpoint, cosine_with_warmup, log_progress
from augbench.world.build.parallel import batch_slice, distributed, train_data_parallel
from augbench.world.build.recipe import COMMITTED_EDITOR, BuildConfig
from augbench.world.build.stages import load_stage, stage_identities, staged_module, weights_fingerprint

__all__ = ["EDITOR_FORMAT", "build_editor", "check_editor", "editor_loop", "editor_stage", "main", "make_editor_unet",
           "make_pairs", "save_editor"]

EDITOR_FORMAT = "augbench.world-editor/1"
#: DiffuseMix's guidance (main.py:36 text 4; diffusers' image default 1.5), used by the check
CHECK_GUIDANCE = {"guidance_scale": 4.0, "image_guidance_scale": 1.5}
_SHARED_PARTS = ("vae", "text_encoder", "tokenizer")


def make_editor_unet(cfg: BuildConfig):
    """The recipe's UNet widened for InstructPix2Pix (the data-parallel workers' empty copy)."""
    from augbench.diffusion.instruct import instruct_unet
    from augbench.world.build.unet import make_unet

    return instruct_unet(make_unet(cfg))


def editor_scheduler(cfg: BuildConfig):
    """Euler ancestral on SD1.5's schedule (METHODS_SPEC §1.1), as ``timbrooks/instruct-pix2pix`` ships."""
    from diffusers import EulerAncestralDiscreteScheduler

    from augbench.world.build.unet import sd15_scheduler_config

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset")
    return EulerAncestralDiscreteScheduler(**{k: v for k, v in sd15_scheduler_config().items() if k in keys},
                                           prediction_type=cfg.unet_prediction)


# --- training data -------------------------------------------------------------------------------------------------

@torch.no_grad()
def _posterior(vae, images_u8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior's mean and std of uint8 ``[N, H, W, 3]`` images (fp32, CPU)."""
    from augbench.world.build.corpus import to_unit

    x = to_unit(torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2)).to(vae.device, vae.dtype)
    post = vae.encode(x).latent_dist
    return post.mean.float().cpu(), post.std.float().cpu()


def make_pairs(cfg: BuildConfig, vae, log: Log, chunk: int = 256) -> tuple[dict, list[str], dict[str, int]]:
    """``cfg.editor_pairs`` edit pairs of pretraining-corpus scenes, encoded.

    Pair ``i`` edits corpus image ``train/i`` with the edit and instruction drawn from a generator seeded with
    ``(seed, "editor-pair", i)`` (:func:`augbench.world.build.edits.edit_pair`). Returns the loop's tensors
    (``cond``: the source latents' posterior mode; ``target_mean`` / ``target_std``: the edited images' posteriors;
    ``instruction``: an index into the instruction list), the instruction list and the count of each edit kind.
    """
    from augbench.data import open_dataset
    from augbench.world.build.edits import edit_pair

    corpus = open_dataset("toycorpus")
    t0 = time.time()
    cond, target_mean, target_std, index, instructions, kinds = [], [], [], [], {}, {}
    for start in range(0, cfg.editor_pairs, chunk):
        sources, targets = [], []
        for i in range(start, min(start + chunk, cfg.editor_pairs)):
            rng = np.random.default_rng(derive_seed(cfg.seed, "editor-pair", i))
            source, target, text, kind = edit_pair(corpus.item(f"train/{i:06d}").scene, cfg.image_size, rng)
            sources.append(source)
            targets.append(target)
            index.append(instructions.setdefault(text, len(instructions)))
            kinds[kind] = kinds.get(kind, 0) + 1
        cond.append(_posterior(vae, np.stack(sources))[0])
        mean, std = _posterior(vae, np.stack(targets))
        target_mean.append(mean)
        target_std.append(std)
    log(f"[editor] rendered and encoded {cfg.editor_pairs} edit pairs ({len(instructions)} instructions) "
        f"in {time.time() - t0:.1f}s")
    data = {"cond": torch.cat(cond), "target_mean": torch.cat(target_mean), "target_std": torch.cat(target_std),
            "instruction": torch.tensor(index, dtype=torch.long)}
    return data, list(instructions), kinds


def train_editor(cfg: BuildConfig, world, log: Log = print, checkpoint: Path | None = None):
    """Fine-tune the world pipeline ``world``'s UNet into an editor; returns (the EMA editor UNet, stats)."""
    from augbench.diffusion.instruct import instruct_unet
    from augbench.world.build.clip import encode_texts

    data, instructions, kinds = make_pairs(cfg, world.vae, log)
    with torch.no_grad():
        data["text_emb"] = encode_texts(world.text_encoder, world.tokenizer, instructions)
        data["empty_emb"] = encode_texts(world.text_encoder, world.tokenizer, [""])[0]
    data["scaling"] = torch.tensor(float(world.vae.config.scaling_factor), dtype=torch.float64)
    if checkpoint:
        data["checkpoint"] = str(checkpoint)
    unet = instruct_unet(world.unet).float()
    trained, stats = train_data_parallel("editor", unet, cfg, data, log, factory=make_editor_unet, loop=editor_loop)
    return trained, {**stats, "pairs": cfg.editor_pairs, "instructions": instructions, "edit_kinds": kinds}


def _dropped(cfg: BuildConfig, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples lose their instruction and which their image: ``p`` each alone, ``p`` both (§3.2.1)."""
    r = torch.rand(n, generator=gen)
    p = cfg.editor_dropout
    text = (r < p) | ((r >= 2 * p) & (r < 3 * p))
    image = (r >= p) & (r < 3 * p)
    return text, image


def editor_loop(cfg: BuildConfig, unet, data: dict, log: Log, rank: int = 0, world: int = 1):
    """The editor's training loop of one (of ``world``) processes; returns (the EMA UNet, stats)."""
    from diffusers import DDPMScheduler

    from augbench.world.build.unet import _diffusion_loss, sd15_scheduler_config, step_with_ema

    cond, mean, std = data["cond"], data["target_mean"], data["target_std"]
    text_emb, empty_emb, which = data["text_emb"], data["empty_emb"], data["instruction"]
    scaling = float(data["scaling"])
    mine = batch_slice(cfg.editor_batch, rank, world)
    ema = copy.deepcopy(unet).requires_grad_(False)
    acp = DDPMScheduler(**{k: v for k, v in sd15_scheduler_config().items() if k != "set_alpha_to_one"}).alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.editor_lr, weight_decay=0.01)
    sched = cosine_with_warmup(opt, cfg.editor_steps, warmup=max(1, cfg.editor_steps // 40))
    gen = make_generator(derive_seed(cfg.seed, "editor-batches"))
    ema_params, unet_params = list(ema.parameters()), list(unet.parameters())
    checkpoint = LoopCheckpoint(data.get("checkpoint"), cfg.checkpoint_every)
    start, losses = checkpoint.restore({"unet": unet, "ema": ema}, opt, sched, gen, log)
    denoise = distributed(unet, world)
    unet.train()
    t0 = time.time()
    for step in range(start, cfg.editor_steps):
        idx = torch.randint(0, len(cond), (cfg.editor_batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
        image = cond[idx].clone()
        text = text_emb[which[idx]].clone()
        drop_text, drop_image = _dropped(cfg, gen, cfg.editor_batch)
        text[drop_text] = empty_emb
        image[drop_image] = 0.0  # the pipeline's unconditional image latent is zeros
        t = torch.randint(0, 1000, (cfg.editor_batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        model_in = torch.cat([zt, image], 1)[mine].to(cfg.device)
        pred = denoise(model_in, t[mine].to(cfg.device), encoder_hidden_states=text[mine].to(cfg.device)).sample
        loss = _diffusion_loss(cfg, pred, z0[mine], eps[mine], a[mine])
        losses.append(step_with_ema(loss, opt, sched, unet_params, ema_params,
                                    min(cfg.editor_ema_decay, (1 + step) / (10 + step)), world))
        log_progress(log, "editor", step, cfg.editor_steps, losses, t0, start)
        checkpoint.maybe_save(step + 1, cfg.editor_steps, {"unet": unet, "ema": ema}, opt, sched, gen, losses, rank)
    ema.eval()
    return ema, {"final_loss": float(np.mean(losses[-200:])), "seconds": time.time() - t0}


# --- the pipeline folder and its check -----------------------------------------------------------------------------

def editor_pipeline(cfg: BuildConfig, world, unet):
    """An in-memory ``StableDiffusionInstructPix2PixPipeline`` of the world's frozen parts and ``unet``."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(vae=world.vae, text_encoder=world.text_encoder,
                                                  tokenizer=world.tokenizer, unet=unet, scheduler=editor_scheduler(cfg),
                                                  safety_checker=None, feature_extractor=None,
                                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_editor(cfg: BuildConfig, world, unet, folder: Path, sd_folder: Path) -> None:
    """The editor as a diffusers folder (fp16 safetensors) whose VAE, text encoder and tokenizer are ``sd_folder``'s
    files: relative links to the same targets as ``sd_folder``'s own links, or to its files (``folder`` and
    ``sd_folder`` are siblings, ``editor/`` and ``sd/`` of one world)."""
    if folder.exists():
        shutil.rmtree(folder)
    pipe = editor_pipeline(cfg, copy.deepcopy(world), copy.deepcopy(unet))  # fp16 copies; the world stays fp32
    pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    for part in _SHARED_PARTS:
        shutil.rmtree(folder / part)
        (folder / part).mkdir()
        for source in sorted((sd_folder / part).iterdir()):
            target = os.readlink(source) if source.is_symlink() else Path("..", "..", sd_folder.name, part, source.name)
            (folder / part / source.name).symlink_to(target)


def _check_images(cfg: BuildConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(sources, the renderer's edits, labels, README prompts) of evenly spaced toybirds test images."""
    from augbench.data import open_dataset
    from augbench.world.build.edits import EDITS, apply_edit, scene_layers

    toy = open_dataset("toybirds")
    samples = toy.samples("test")
    readme = [kind for kind, texts in EDITS.items() if kind not in ("night", "background")]
    pick = np.linspace(0, len(samples) - 1, min(cfg.check_editor_images, len(samples))).round().astype(int)
    sources, targets, prompts = [], [], []
    for k, i in enumerate(pick):
        rng = np.random.default_rng(derive_seed(cfg.seed, "editor-check", k))
        kind = readme[int(rng.integers(len(readme)))]
        layers = scene_layers(toy.item(samples[i].image_id).scene, cfg.image_size)
        sources.append(layers.image)
        targets.append(apply_edit(kind, layers, rng))
        prompts.append(EDITS[kind][0])
    return np.stack(sources), np.stack(targets), np.array([samples[i].label for i in pick]), prompts


@torch.no_grad()
def check_editor(cfg: BuildConfig, world, unet, oracle_folder: Path | None, log: Log, batch: int = 32) -> dict:
    """How the editor does on toybirds test images edited with the README prompts, as DiffuseMix samples it
    (Euler ancestral, text guidance 4, image guidance 1.5, ``check_editor_steps`` steps).

    ``edit_mae`` (editor output vs the renderer's edit, mean absolute error in [0, 1]) beside ``identity_mae``
    (the unedited source vs the renderer's edit: what returning the input scores); with an oracle, its accuracy on
    the sources, the renderer's edits and the editor's (does the species survive the edit).
    """
    from PIL import Image

    from augbench.diffusion.pipelines import to_uint8

    t0 = time.time()
    sources, targets, labels, prompts = _check_images(cfg)
    pipe = editor_pipeline(cfg, world, copy.deepcopy(unet).half().float().eval())  # the saved (fp16) weights
    edited = []
    for s in range(0, len(sources), batch):
        out = pipe(prompt=prompts[s:s + batch], image=[Image.fromarray(x) for x in sources[s:s + batch]],
                   generator=[make_generator(derive_seed(cfg.seed, "editor-check-noise", s + j))
                              for j in range(len(sources[s:s + batch]))],
                   num_inference_steps=cfg.check_editor_steps, output_type="np", **CHECK_GUIDANCE).images
        edited.append(to_uint8(np.asarray(out)))
    edited = np.concatenate(edited)
    mae = lambda a, b: float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255)  # noqa: E731
    results = {"images": len(sources), "steps": cfg.check_editor_steps, **CHECK_GUIDANCE,
               "edit_mae": mae(edited, targets), "identity_mae": mae(sources, targets),
               "output_vs_source_mae": mae(edited, sources)}
    if oracle_folder is not None and (oracle_folder / "config.json").is_file():
        from augbench.world import check as world_check

        oracle = world_check.load_oracle(oracle_folder.parent)
        for name, images in (("source", sources), ("renderer_edit", targets), ("editor_edit", edited)):
            results[f"oracle_accuracy_{name}"] = float((world_check.classify(*oracle, images) == labels).mean())
    results["seconds"] = time.time() - t0
    log("[editor] check: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items() if isinstance(v, float)))
    return results


def _record(cfg: BuildConfig, stats: dict, check: dict, world_sha: str, t_start: float) -> dict:
    from augbench.world.build.edits import EDIT_VERSION, EDITS
    from augbench.world.build.parallel import num_processes
    from augbench.world.build.record import cpu_model, world_versions
    from augbench.world.render import RENDER_VERSION

    return {"format": EDITOR_FORMAT, "config": {k: v for k, v in asdict(cfg).items() if k.startswith("editor_")},
            "world": {"sd_sha256": world_sha, "recipe": asdict(cfg)}, "render_version": RENDER_VERSION,
            "edit_version": EDIT_VERSION, "edits": {k: list(v) for k, v in EDITS.items()}, "stats": stats,
            "check": check, "build_seconds": time.time() - t_start, "versions": world_versions(),
            "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                        "threads": cfg.threads, "processes": num_processes(cfg), "device": cfg.device}}


# --- running it ----------------------------------------------------------------------------------------------------

def editor_stage(cfg: BuildConfig, stages: Path, staging: Path, log: Log) -> dict | None:
    """The editor as a stage of ``augbench world build``: trained on the staged ``sd/`` (or reused from
    ``stages/editor.pt``), saved to ``staging/editor``; its stats for the world's ``build.json`` (None when
    ``editor_steps`` is 0)."""
    from augbench.world import check as world_check

    if cfg.editor_steps <= 0:
        return None
    t_start = time.time()
    world = world_check.load_world_pipeline(staging)
    unet, stats = staged_module(stages / "editor.pt", make_editor_unet(cfg),
                                lambda: train_editor(cfg, world, log, checkpoint=stages / "editor.ckpt.pt"))
    check = check_editor(cfg, world, unet, staging / "oracle", log)
    save_editor(cfg, world, unet, staging / "editor", staging / "sd")
    record = _record(cfg, stats, check, weights_fingerprint(staging / "sd"), t_start)
    (staging / "editor" / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return {**stats, "check": check}


def _world_recipe(weights: Path, **overrides) -> BuildConfig:
    """The recipe ``weights`` was built with (its ``build.json``), ``init_from`` cleared, ``overrides`` applied; how
    that build ran (threads, processes) is not taken over: this machine's defaults apply."""
    record = weights / "build.json"
    if not record.is_file() or not (weights / "sd" / "model_index.json").is_file():
        raise FileNotFoundError(f"{weights}: expected a built world (build.json and sd/), e.g. the committed "
                                "benchmark/world/weights or the output of `augbench world build`")
    config = json.loads(record.read_text())["config"]
    known = {f.name for f in fields(BuildConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
              if k in known and k not in ("threads", "processes")}
    return replace(BuildConfig(**values), init_from=None, **overrides)


def build_editor(weights: Path, cfg: BuildConfig, log: Log = print, resume: bool = False) -> dict:
    """Train the editor of the built world ``weights`` and publish it as ``weights/editor`` (replacing one).

    Work happens in ``<weights>.editor-building``: the loop checkpoints there and ``resume=True`` continues when the
    editor's identity (the world's ``sd/`` bytes, the recipe's editor settings, render and edit versions) is
    unchanged; otherwise the folder is wiped. Returns the editor's ``build.json`` record.
    """
    from augbench.world import check as world_check

    torch.set_num_threads(cfg.threads)
    weights = Path(weights)
    staging = weights.with_name(weights.name + ".editor-building")
    world_sha = weights_fingerprint(weights / "sd")
    identity = {**stage_identities(cfg)["editor"], "world_sd_sha256": world_sha}
    previous = load_stage(staging / "identity.json") if resume else None
    if previous is None or {k: v for k, v in previous.items() if k != "resumed"} != identity:
        log(f"building the editor in {staging}" + (" (nothing matching to resume)" if resume else ""))
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write_json_atomic(staging / "identity.json", identity)
    else:
        log(f"resuming the editor build in {staging}")
    t_start = time.time()
    world = world_check.load_world_pipeline(weights)
    unet, stats = staged_module(staging / "editor.pt", make_editor_unet(cfg),
                                lambda: train_editor(cfg, world, log, checkpoint=staging / "editor.ckpt.pt"))
    check = check_editor(cfg, world, unet, weights / "oracle", log)
    save_editor(cfg, world, unet, staging / "editor", weights / "sd")
    record = _record(cfg, stats, check, world_sha, t_start)
    (staging / "editor" / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    if (weights / "editor").exists():
        shutil.rmtree(weights / "editor")
    (staging / "editor").rename(weights / "editor")
    shutil.rmtree(staging)
    log(f"editor built in {record['build_seconds'] / 60:.1f} min -> {weights / 'editor'}")
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m augbench.world.build.editor``: build the instruction editor of a built world."""
    from augbench.run.profiles import WORLD_WEIGHTS

    p = argparse.ArgumentParser(prog="python -m augbench.world.build.editor", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(WORLD_WEIGHTS), help="the built world (default: the committed one)")
    p.add_argument("--steps", type=int, default=COMMITTED_EDITOR["editor_steps"], help="training steps")
    p.add_argument("--pairs", type=int, default=COMMITTED_EDITOR["editor_pairs"], help="edit pairs rendered")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    p.add_argument("--processes", type=int, default=None, help="data-parallel processes (default: one per thread)")
    p.add_argument("--device", default=None, help="torch device (default: the world recipe's)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build from its checkpoint")
    p.add_argument("--smoke", action="store_true", help="a few steps (testing)")
    args = p.parse_args(argv)
    weights = Path(args.weights)
    overrides = {"editor_steps": args.steps, "editor_pairs": args.pairs}
    if args.smoke:
        smoke = BuildConfig.smoke()
        overrides = {f.name: getattr(smoke, f.name) for f in fields(BuildConfig)
                     if f.name.startswith(("editor_", "check_editor_"))} | {"processes": 1}
    for key in ("threads", "processes", "device"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    build_editor(weights, _world_recipe(weights, **overrides), log=lambda s: print(s, flush=True), resume=args.resume)
    return 0


if __name__ == "__main__":
    from augbench.world.build.editor import main as _main  # the package's module, so workers import its loop

    sys.exit(_main())
