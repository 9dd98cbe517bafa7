"""The UNet stage: a tiny diffusers ``UNet2DConditionModel`` trained on the VAE's latents, conditioned
on the frozen CLIP text tower, with SD1.5's noise schedule (METHODS_SPEC §1.1), caption dropout for
classifier-free guidance, optional min-SNR weighting and an EMA of the weights.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.run.seeding import derive_seed, make_generator
from augbench.world.build.loops import Log, LoopCheckpoint, cosine_with_warmup, log_progress, seeded_init
from augbench.world.build.parallel import batch_loss, batch_slice, distributed, train_data_parallel
from augbench.world.build.recipe import BuildConfig
from augbench.world.build.stages import inherited_module
from augbench.world.build.vae import vae_factor


def make_unet(cfg: BuildConfig):
    """An untrained ``UNet2DConditionModel`` on the VAE's latent grid, cross-attending to the text tower."""
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


def sd15_scheduler_config() -> dict:
    """SD1.5's noise schedule (METHODS_SPEC §1.1): 1000 steps, scaled-linear 0.00085..0.012."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")


def train_unet(cfg: BuildConfig, lat_mean, lat_std, scaling: float, text_emb, empty_emb, log: Log = print,
               checkpoint: Path | None = None, init: Path | None = None):
    """Epsilon-prediction MSE with uniform timesteps, caption dropout and an EMA of the weights
    (resumable from ``checkpoint`` as :func:`augbench.world.build.vae.train_vae`); starts from the
    diffusers UNet folder ``init`` when given (``BuildConfig.init_from``), else from a seeded
    initialisation."""
    data = {"lat_mean": lat_mean, "lat_std": lat_std, "scaling": torch.tensor(scaling, dtype=torch.float64),
            "text_emb": text_emb, "empty_emb": empty_emb} | ({"checkpoint": str(checkpoint)} if checkpoint else {})
    unet = inherited_module(make_unet(cfg), init) if init else seeded_init(cfg.seed, "unet", lambda: make_unet(cfg))
    return train_data_parallel("unet", unet, cfg, data, log, factory=make_unet, loop=unet_loop)


def unet_loop(cfg: BuildConfig, unet, data: dict, log: Log, rank: int = 0, world: int = 1):
    """The UNet training loop of one (of ``world``) processes; returns (the EMA UNet, stats)."""
    from diffusers import DDPMScheduler

    lat_mean, lat_std, text_emb, empty_emb = data["lat_mean"], data["lat_std"], data["text_emb"], data["empty_emb"]
    scaling = float(data["scaling"])
    mine = batch_slice(cfg.unet_batch, rank, world)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_sched = DDPMScheduler(**{k: v for k, v in sd15_scheduler_config().items() if k != "set_alpha_to_one"})
    acp = noise_sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    sched = cosine_with_warmup(opt, cfg.unet_steps, warmup=max(1, cfg.unet_steps // 40))
    gen = make_generator(derive_seed(cfg.seed, "unet-batches"))
    n = len(text_emb)
    ema_params, unet_params = list(ema.parameters()), list(unet.parameters())
    checkpoint = LoopCheckpoint(data.get("checkpoint"), cfg.checkpoint_every)
    start, losses = checkpoint.restore({"unet": unet, "ema": ema}, opt, sched, gen, log)
    denoise = distributed(unet, world)
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
        pred = denoise(zt[mine].to(cfg.device), t[mine].to(cfg.device),
                       encoder_hidden_states=cond[mine].to(cfg.device)).sample
        loss = _diffusion_loss(cfg, pred, z0[mine], eps[mine], a[mine])
        losses.append(step_with_ema(loss, opt, sched, unet_params, ema_params, min(cfg.ema_decay, (1 + step) / (10 + step)),
                                    world))
        log_progress(log, "unet", step, cfg.unet_steps, losses, t0, start)
        checkpoint.maybe_save(step + 1, cfg.unet_steps, {"unet": unet, "ema": ema}, opt, sched, gen, losses, rank)
    ema.eval()
    return ema, {"final_loss": float(np.mean(losses[-200:])), "seconds": time.time() - t0}


def step_with_ema(loss: torch.Tensor, opt, sched, params: list, ema_params: list, decay: float, world: int) -> float:
    """One optimiser step of a denoiser (gradients clipped to norm 1) and its EMA update at ``decay``; returns the
    whole batch's loss. Shared by the UNet and the instruction editor (``augbench.world.build.editor``)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    batch = batch_loss(loss, world)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema_params, params, 1 - decay)
    return batch


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
