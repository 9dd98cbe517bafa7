"""The concept-learning loops of ``ti`` and ``lora_ti`` on real diffusers modules (+ peft for LoRA).

Both loops load their own copy of the base model from disk (never a warm pipeline another method
uses), train on the cell's training part only, and draw every random number (sampler, flips,
posterior samples, noise, timesteps, captions, LoRA init) from ``torch.Generator`` s derived from the
recipe's seed: the global RNG is never touched.

Objective (both kinds, METHODS_SPEC §1.4): epsilon-prediction MSE, ``t ~ U{0..T-1}``, latents = a
*sample* of the VAE posterior x the VAE scaling factor. Images: shorter side resized to the recipe's
resolution (bilinear), random crop, random horizontal flip, mapped to [-1, 1]. When every resized
image is already square the crop is the identity, so each image's posterior (mean, std) is computed
once for it and its mirror image and a fresh sample is drawn per step -- the same distribution as
encoding every step, without the repeated VAE passes.

* ``lora_ti``: peft LoRA (rank r, alpha = r) on ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of every UNet
  attention (self and cross), ``<class_i>`` tokens initialised from one token id; AdamW over the LoRA
  parameters (lr) and the text encoder's input-embedding matrix (ti_lr); grad-norm clip on LoRA only;
  after every step all embedding rows except the class tokens are restored. Class-balanced sampling
  (weights 1/N_c) when class counts differ.
* ``ti``: only the class-token rows are trained. HARNESS: all classes are trained in one batched loop
  -- each step takes ``batch_size`` images of *every* class, each captioned with its own class's token,
  and the loss is the sum over classes of each class's mean MSE. The UNet and text encoder are frozen
  and a token appears only in its own class's captions, so each token's gradient (and, AdamW being
  per element, its update) is exactly what DA-Fusion's separate per-class run with that batch gives.

Memory (``augbench.diffusion.concepts.memory``): a step's rows go through the text encoder and UNet in
micro-batches of ``micro_batch`` rows with gradients accumulated (every random number of the step drawn
first, rows weighted by their share of the step's loss: the same optimiser step); images reach the VAE
``encode_batch`` at a time; ``gradient_checkpointing`` recomputes block activations in the backward;
on CUDA with ``mixed_precision = "fp16"`` the frozen weights are fp16 and the trained ones fp32. An
out-of-memory error becomes a one-line ``ConceptMemoryError`` naming the key that lowers the cost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from augbench.diffusion.concepts import formats
from augbench.diffusion.concepts.memory import cast_frozen, enable_checkpointing, memory_guard, row_chunks
from augbench.diffusion.concepts.recipes import IMAGENET_TEMPLATES_SMALL, validate_recipe
from augbench.run.seeding import derive_seed, make_generator

__all__ = ["LORA_TARGETS", "TrainResult", "batch_sampler", "load_base_components", "lora_modules", "train_concepts",
           "train_lora_ti", "train_ti"]

log = logging.getLogger(__name__)

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class TrainResult:
    kind: str
    steps: int
    seconds: float
    losses: list[float]
    class_tokens: dict[int, str]


def load_base_components(profile: Any, device: str) -> dict[str, Any]:
    """Fresh fp32 copies of the base model's tokenizer, text encoder, UNet, VAE and noise schedule."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path, kw = profile.pipeline, {"revision": profile.pipeline_revision, "local_files_only": profile.local_files_only}
    dtype = {"torch_dtype": torch.float32}
    try:
        comps = {
            "tokenizer": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw),
            "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw, **dtype),
            "unet": UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw, **dtype),
            "vae": AutoencoderKL.from_pretrained(path, subfolder="vae", **kw, **dtype),
            "noise_scheduler": DDPMScheduler.from_pretrained(path, subfolder="scheduler", **kw),
        }
    except (OSError, ValueError) as exc:  # the same one line as a pipeline that does not load (names the variable)
        from augbench.diffusion.pipelines import ModelLoadError, load_error_message

        raise ModelLoadError(f"concept learning: {load_error_message(profile, exc)}") from exc
    for name in ("text_encoder", "unet", "vae"):
        comps[name].to(device).requires_grad_(False)
    # channels-last convolutions: textual inversion's 96-row UNet forward + backward (24 classes x 4) took
    # 523 ms instead of 695 on 2 CPU cores, same gradients to 1e-9; no change at LoRA's 8 rows
    for name in ("unet", "vae"):
        comps[name].to(memory_format=torch.channels_last)
    comps["vae"].eval()
    return comps


# --- data ---------------------------------------------------------------------------------------------

def _load_images(source: Any, image_ids: Sequence[str], resolution: int) -> list[torch.Tensor]:
    """uint8 ``[3, h, w]`` tensors, shorter side resized to ``resolution`` (bilinear, as Diff-Mix)."""
    from PIL import Image

    out = []
    for image_id in image_ids:
        im = source.load_image(image_id).convert("RGB")
        w, h = im.size
        s = resolution / min(w, h)
        size = (max(resolution, round(w * s)), max(resolution, round(h * s)))
        if size != (w, h):
            im = im.resize(size, Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return out


class LatentSampler:
    """Latents of training images: random crop + flip + a posterior sample x scaling factor.

    ``encode_batch`` images go through the VAE per call (in the VAE's dtype; moments kept in fp32), each
    call inside ``guard(images)`` when given (the out-of-memory context naming ``encode_batch``).
    """

    def __init__(self, vae: Any, images: list[torch.Tensor], resolution: int, flip: bool, device: str,
                 encode_batch: int = 32, guard: Callable[[int], Any] | None = None):
        self.vae, self.images, self.res, self.flip, self.device = vae, images, resolution, flip, device
        self.encode_batch = max(1, int(encode_batch))
        self.guard = guard or (lambda n: contextlib.nullcontext())
        self.scale = float(vae.config.scaling_factor)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.cached = all(tuple(im.shape[1:]) == (resolution, resolution) for im in images)
        if self.cached:
            views = [images, [im.flip(-1) for im in images]] if flip else [images]
            self.moments = [self._moments(torch.stack(v)) for v in views]

    @torch.no_grad()
    def _moments(self, u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, stds = [], []
        chunk, dtype = self.encode_batch, getattr(self.vae, "dtype", torch.float32)
        for i in range(0, len(u8), chunk):
            x = (u8[i:i + chunk].to(self.device, torch.float32) / 127.5 - 1).to(dtype)
            with self.guard(len(x)):
                dist = self.vae.encode(x).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
        return torch.cat(means), torch.cat(stds)

    def sample(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        flips = (torch.rand(len(idx), generator=gen) < 0.5) if self.flip else torch.zeros(len(idx), dtype=torch.bool)
        if self.cached:
            mean = torch.stack([self.moments[int(f)][0][int(i)] for i, f in zip(idx, flips)])
            std = torch.stack([self.moments[int(f)][1][int(i)] for i, f in zip(idx, flips)])
        else:
            crops = []
            for i, f in zip(idx.tolist(), flips.tolist()):
                im = self.images[i]
                top = int(torch.randint(0, im.shape[1] - self.res + 1, (1,), generator=gen))
                left = int(torch.randint(0, im.shape[2] - self.res + 1, (1,), generator=gen))
                im = im[:, top:top + self.res, left:left + self.res]
                crops.append(im.flip(-1) if f else im)
            mean, std = self._moments(torch.stack(crops))
        eps = torch.randn(mean.shape, generator=gen).to(self.device)
        return (mean + std * eps - self.shift) * self.scale


# --- shared pieces ------------------------------------------------------------------------------------

def _generators(recipe: dict[str, Any], kind: str) -> dict[str, torch.Generator]:
    seed = int(recipe["seed"])
    return {name: make_generator(derive_seed("concepts", kind, seed, name))
            for name in ("init", "sampler", "latents", "noise", "captions")}


def _add_tokens(tokenizer: Any, text_encoder: Any, tokens: Sequence[str], init_id: int) -> list[int]:
    added = tokenizer.add_tokens(list(tokens))
    if added != len(tokens):
        raise ValueError(f"{len(tokens) - added} class token(s) of {list(tokens)[:3]}... already exist in the tokenizer")
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    with torch.random.fork_rng(devices=[]):  # the new rows' default init draws from the global RNG; set below
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[ids] = weight[init_id].clone()
    return ids


def _tokenize(tokenizer: Any, captions: Sequence[str], device: str) -> torch.Tensor:
    return tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def _draw_noise(noise_scheduler: Any, latents: torch.Tensor, gens: dict[str, torch.Generator]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's noise and timesteps for every row (drawn on the CPU generator, in this order)."""
    device = latents.device
    noise = torch.randn(latents.shape, generator=gens["noise"]).to(device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=gens["noise"]).to(device)
    return noise, t


def _row_losses(unet: Any, noise_scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor) -> torch.Tensor:
    """Each row's epsilon- (or v-) prediction MSE, fp32 ``[rows]``."""
    noisy = noise_scheduler.add_noise(latents, noise, t)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    pred = unet(noisy, t, cond).sample
    return F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)


def _accumulate(recipe: dict[str, Any], kind: str, device: str, modules: tuple[Any, Any, Any],
                latents: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor,
                gens: dict[str, torch.Generator], scaler: Any = None) -> torch.Tensor:
    """Forward + backward of one step in micro-batches of ``micro_batch`` rows; returns the step's loss (detached).

    ``modules``: (text encoder, UNet, noise scheduler). The loss is ``sum_r weights[r] * mse_r`` over the
    step's rows (latents, caption ids); its gradient accumulates in the parameters' ``.grad`` (zeroed by
    the caller). The step's noise and timesteps are drawn for every row first, then sliced.
    """
    text_encoder, unet, noise_scheduler = modules
    noise, t = _draw_noise(noise_scheduler, latents, gens)
    chunks = row_chunks(len(latents), int(recipe["micro_batch"]))
    total = torch.zeros((), device=latents.device)
    with memory_guard(kind, "step", chunks[0].stop - chunks[0].start, recipe, device, len(latents)):
        for rows in chunks:
            with _autocast(recipe, device):
                cond = text_encoder(input_ids[rows])[0]
                per_row = _row_losses(unet, noise_scheduler, latents[rows], noise[rows], t[rows], cond)
                loss = (per_row * weights[rows]).sum()
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += loss.detach()
    return total


def _prepare_precision(recipe: dict[str, Any], device: str, *modules: Any) -> None:
    """On CUDA with fp16 mixed precision: the frozen weights of ``modules`` in fp16, trained ones stay fp32."""
    if recipe.get("mixed_precision") == "fp16" and torch.device(device).type == "cuda":
        for module in modules:
            cast_frozen(module, torch.float16)


def _grad_scaler(recipe: dict[str, Any], device: str) -> Any:
    """fp16 autocast on CUDA trains with a GradScaler (as accelerate's fp16 mode, which both references use)."""
    if recipe.get("mixed_precision") == "fp16" and torch.device(device).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def _autocast(recipe: dict[str, Any], device: str):
    if recipe.get("mixed_precision") == "fp16" and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _class_names(ctx: Any) -> list[str]:
    return list(ctx.require_card().class_names)


def _meta(ctx: Any) -> str:
    return str(getattr(ctx.require_card(), "meta", "") or "")


def _caption(template: str, token: str, meta: str) -> str:
    return " ".join(template.format(token=token, meta=meta).split())


def _latent_sampler(recipe: dict[str, Any], kind: str, ctx: Any, train_part: Any, vae: Any, device: str
                    ) -> LatentSampler:
    """The training images' sampler, its VAE calls ``encode_batch`` images each (an OOM names that key)."""
    res = int(recipe["resolution"])
    images = _load_images(ctx.source, train_part.image_ids, res)
    return LatentSampler(vae, images, res, bool(recipe["flip"]), device, int(recipe["encode_batch"]),
                         guard=lambda n: memory_guard(kind, "encode", n, recipe, device))


# --- lora_ti ------------------------------------------------------------------------------------------

def batch_sampler(labels: torch.Tensor, mode: str, batch_size: int, gen: torch.Generator) -> Callable[[], torch.Tensor]:
    """Indices of each step's batch.

    ``balanced``: ``WeightedRandomSampler``-style draws with replacement, weight ``1/N_c`` per image
    (Diff-Mix's long-tail sampler [DM train_lora.py:824-833]); ``uniform``: shuffled epochs (a
    ``DataLoader`` with ``shuffle=True``); ``auto``: balanced when the class counts differ.
    """
    if mode not in ("auto", "balanced", "uniform"):
        from augbench.contract import ConfigError

        raise ConfigError(f"lora_ti recipe: sampler {mode!r}; expected auto, balanced or uniform")
    counts = torch.bincount(labels).float()
    balanced = mode == "balanced" or (mode == "auto" and len(set(counts[counts > 0].tolist())) > 1)
    weights = 1.0 / counts[labels]
    order: list[int] = []

    def next_batch() -> torch.Tensor:
        nonlocal order
        if balanced:
            return torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        while len(order) < batch_size:
            order += torch.randperm(len(labels), generator=gen).tolist()
        idx, order = torch.tensor(order[:batch_size]), order[batch_size:]
        return idx

    next_batch.balanced = balanced  # type: ignore[attr-defined]
    return next_batch


def _inject_lora(unet: Any, rank: int, gen: torch.Generator) -> list[torch.nn.Parameter]:
    """peft LoRA on every attention projection; A re-initialised from ``gen`` (kaiming-uniform, as peft), B = 0."""
    from peft import LoraConfig

    # creating the LoRA layers draws their default init from the global RNG: fork it (restored on exit),
    # then re-initialise A from ``gen`` below, so the values depend on the recipe's seed alone
    with torch.random.fork_rng(devices=[]):
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True,
                                    target_modules=list(LORA_TARGETS)))
    params = []
    for module in unet.modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            with torch.no_grad():
                torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
                b.zero_()
            params += [a, b]
    for p in unet.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def lora_modules(unet: Any) -> list[str]:
    """Names of the UNet modules that carry a LoRA adapter."""
    return [name for name, m in unet.named_modules() if hasattr(m, "lora_A") and len(getattr(m, "lora_A", {})) > 0]


def _write_lora_ti(folder: Path, unet: Any, embedding: torch.Tensor, ids: list[int], tokens: list[str],
                   names: list[str]) -> None:
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(folder), unet_lora_layers=_diffusers_lora_state(get_peft_model_state_dict(unet)),
        weight_name=formats.LORA_FILE, safe_serialization=True)
    formats.write_lora_ti_embeds(folder / formats.TI_EMBEDS_FILE, tokens, embedding.detach()[ids], names)


def train_lora_ti(recipe: dict[str, Any], train_part: Any, ctx: Any, folder: Path,
                  progress: Callable[[int, float], None] | None = None,
                  snapshots: dict[int, Path] | None = None) -> TrainResult:
    recipe = validate_recipe("lora_ti", recipe)
    t0 = time.time()
    device = ctx.device
    gens = _generators(recipe, "lora_ti")
    comps = load_base_components(ctx.profile, device)
    tok, te, unet, vae, sched = (comps[k] for k in ("tokenizer", "text_encoder", "unet", "vae", "noise_scheduler"))
    names = _class_names(ctx)
    tokens = [formats.dm_token(i) for i in range(len(names))]
    ids = _add_tokens(tok, te, tokens, int(recipe["init_token_id"]))
    embedding = te.get_input_embeddings().weight
    original = embedding.detach().clone()
    keep = torch.ones(len(original), dtype=torch.bool, device=original.device)
    keep[ids] = False
    embedding.requires_grad_(True)
    lora_params = _inject_lora(unet, int(recipe["rank"]), gens["init"])
    unet.train()
    te.train()
    if recipe["gradient_checkpointing"]:
        enable_checkpointing(unet)
    _prepare_precision(recipe, device, vae, te, unet)

    labels = torch.tensor(train_part.labels)
    sampler = _latent_sampler(recipe, "lora_ti", ctx, train_part, vae, device)
    meta = _meta(ctx)
    caption_ids = _tokenize(tok, [_caption(recipe["caption"], tokens[int(y)], meta) for y in labels], device)
    next_batch = batch_sampler(labels, recipe["sampler"], int(recipe["batch_size"]), gens["sampler"])

    opt = torch.optim.AdamW([{"params": lora_params, "lr": float(recipe["lr"])},
                             {"params": [embedding], "lr": float(recipe["ti_lr"])}],
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=float(recipe["weight_decay"]))
    scaler = _grad_scaler(recipe, device)
    steps, losses = int(recipe["steps"]), []
    for step in range(steps):
        idx = next_batch()
        latents = sampler.sample(idx, gens["latents"])
        weights = (torch.ones(len(idx)) / len(idx)).to(latents.device)  # the batch mean
        opt.zero_grad(set_to_none=True)
        loss = _accumulate(recipe, "lora_ti", device, (te, unet, sched), latents, caption_ids[idx.to(device)],
                           weights, gens, scaler)
        if scaler is not None:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(lora_params, float(recipe["grad_clip"]))
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        with torch.no_grad():  # only the class tokens may change [DM train_lora.py:1050-1060]
            embedding[keep] = original[keep]
        losses.append(float(loss))
        if progress is not None:
            progress(step + 1, losses[-1])
        if snapshots and step + 1 in snapshots:  # intermediate checkpoints (recipe studies)
            _write_lora_ti(Path(snapshots[step + 1]), unet, embedding, ids, tokens, names)

    unet.eval()
    _write_lora_ti(Path(folder), unet, embedding, ids, tokens, names)
    return TrainResult("lora_ti", steps, time.time() - t0, losses, dict(enumerate(tokens)))


def _diffusers_lora_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from diffusers.utils import convert_state_dict_to_diffusers

    return {k: v.detach().cpu().contiguous() for k, v in convert_state_dict_to_diffusers(state).items()}


# --- ti -----------------------------------------------------------------------------------------------

def train_ti(recipe: dict[str, Any], train_part: Any, ctx: Any, folder: Path,
             progress: Callable[[int, float], None] | None = None,
             snapshots: dict[int, Path] | None = None) -> TrainResult:
    recipe = validate_recipe("ti", recipe)
    t0 = time.time()
    device = ctx.device
    gens = _generators(recipe, "ti")
    comps = load_base_components(ctx.profile, device)
    tok, te, unet, vae, sched = (comps[k] for k in ("tokenizer", "text_encoder", "unet", "vae", "noise_scheduler"))
    names = _class_names(ctx)
    tokens = [formats.ti_token(n) for n in names]
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"class names give duplicate DA-Fusion tokens: {tokens}")
    init_ids = tok(recipe["init_word"], add_special_tokens=False).input_ids
    if len(init_ids) != 1:
        raise ValueError(f"ti init_word {recipe['init_word']!r} is {len(init_ids)} tokens; it must be one")
    ids = _add_tokens(tok, te, tokens, init_ids[0])
    embedding = te.get_input_embeddings().weight
    original = embedding.detach().clone()
    keep = torch.ones(len(original), dtype=torch.bool, device=original.device)
    keep[ids] = False
    embedding.requires_grad_(True)
    unet.eval()
    if recipe["gradient_checkpointing"]:
        enable_checkpointing(unet, te)
    _prepare_precision(recipe, device, vae, unet)  # the text encoder stays fp32: the tokens train through it

    labels = torch.tensor(train_part.labels)
    present = sorted(set(labels.tolist()))
    by_class = {c: torch.nonzero(labels == c).flatten() for c in present}
    sampler = _latent_sampler(recipe, "ti", ctx, train_part, vae, device)
    templates = (IMAGENET_TEMPLATES_SMALL if recipe["templates"] == "imagenet_small"
                 else (recipe["templates"].replace("{token}", "{}").replace("{meta}", _meta(ctx)),))
    opt = torch.optim.AdamW([embedding], lr=float(recipe["lr"]), betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=float(recipe["weight_decay"]))
    scaler = _grad_scaler(recipe, device)
    bs, steps, losses = int(recipe["batch_size"]), int(recipe["steps"]), []
    orders: dict[int, list[int]] = {c: [] for c in present}
    for step in range(steps):
        idx_parts, groups = [], []
        for c in present:  # each class's own shuffled epochs (DA-Fusion's per-class dataset, repeated)
            while len(orders[c]) < bs:
                orders[c] += by_class[c][torch.randperm(len(by_class[c]), generator=gens["sampler"])].tolist()
            idx_parts += orders[c][:bs]
            orders[c] = orders[c][bs:]
            groups += [c] * bs
        idx = torch.tensor(idx_parts)
        pick = torch.randint(0, len(templates), (len(idx),), generator=gens["captions"]).tolist()
        captions = [" ".join(templates[p].format(tokens[int(labels[i])]).split()) for p, i in zip(pick, idx.tolist())]
        latents = sampler.sample(idx, gens["latents"])
        step_ids = _tokenize(tok, captions, device)
        # the loss is the sum over classes of each class's mean MSE: row weight 1 / rows of its class
        groups_t = torch.tensor(groups)
        weights = (1.0 / torch.bincount(groups_t).float())[groups_t].to(latents.device)
        opt.zero_grad(set_to_none=True)
        loss = _accumulate(recipe, "ti", device, (te, unet, sched), latents, step_ids, weights, gens, scaler)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        with torch.no_grad():
            embedding[keep] = original[keep]
        losses.append(float(loss) / len(present))
        if progress is not None:
            progress(step + 1, losses[-1])
        if snapshots and step + 1 in snapshots:
            Path(snapshots[step + 1]).mkdir(parents=True, exist_ok=True)
            formats.write_ti_embeds(Path(snapshots[step + 1]) / formats.TI_FILE, tokens, embedding.detach()[ids])
    formats.write_ti_embeds(folder / formats.TI_FILE, tokens, embedding.detach()[ids])
    return TrainResult("ti", steps, time.time() - t0, losses, dict(enumerate(tokens)))


def train_concepts(kind: str, recipe: dict[str, Any], train_part: Any, ctx: Any, folder: Path,
                   progress: Callable[[int, float], None] | None = None,
                   snapshots: dict[int, Path] | None = None) -> TrainResult:
    """Train ``kind`` on ``train_part`` (the cell's training part) and write its files into ``folder``."""
    if ctx.source is None:
        raise ValueError("concept learning needs the dataset's images: MethodContext(source=...)")
    train = {"lora_ti": train_lora_ti, "ti": train_ti}[kind]
    Path(folder).mkdir(parents=True, exist_ok=True)
    result = train(recipe, train_part, ctx, Path(folder), progress, snapshots)
    (Path(folder) / "losses.json").write_text(
        json.dumps({"steps": result.steps, "seconds": result.seconds, "loss": result.losses}) + "\n")
    return result
